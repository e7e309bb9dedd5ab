"""YAML in and out for the SDK and plugins: libyaml when built, and a quick import.

``safe_load``/``safe_dump`` are PyYAML's safe functions, run by libyaml's C
loader and dumper when PyYAML was built with it (same results, several times
faster on small documents, which is what action configs and status files are).

Importing PyYAML has one expensive step:

``yaml.reader`` compiles a large Unicode character-class regex when it is
imported (the figure is in docs/plugins.md, "Speed"). That regex is only
used by the pure-Python reader, which the runner never uses when libyaml is
built (it loads and dumps with ``CSafeLoader``/``CSafeDumper``). ``import_yaml()``
therefore imports PyYAML with that one pattern compiled on first use instead.
Behaviour is unchanged: the pattern is the same, only compiled later if ever.
"""

from __future__ import annotations

import re
import sys
from types import ModuleType

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any

_NON_PRINTABLE_START = "[^\x09\x0a\x0d\x20-\x7e\x85"


class _LazyPattern:
    """A compiled pattern made on first attribute access."""

    __slots__ = ("_compiled", "_flags", "_pattern")

    def __init__(self, pattern: str, flags: int) -> None:
        self._pattern = pattern
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = re.compile(self._pattern, self._flags)
        return getattr(self._compiled, name)


def safe_load(stream: Any) -> Any:
    """``yaml.safe_load`` through libyaml when available."""
    yaml = import_yaml()
    return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def safe_dump(data: Any, stream: Any = None, **options: Any) -> Any:
    """``yaml.safe_dump`` through libyaml when available (returns the text when ``stream`` is None)."""
    yaml = import_yaml()
    options.setdefault("default_flow_style", False)
    return yaml.dump(data, stream, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)


def import_yaml() -> ModuleType:
    """``yaml``, imported with its non-printable-character regex compiled lazily."""
    module = sys.modules.get("yaml")
    if module is not None:
        return module
    real_compile = re.compile

    def compile_lazily(pattern: Any, flags: int = 0) -> Any:
        if isinstance(pattern, str) and pattern.startswith(_NON_PRINTABLE_START):
            return _LazyPattern(pattern, flags)
        return real_compile(pattern, flags)

    re.compile = compile_lazily
    try:
        import yaml
    finally:
        re.compile = real_compile
    return yaml
