"""Find a plugin class from what ``--plugin`` says, and build it.

One discovery path for built-in and third-party plugins, tried in this order:
a built-in name or alias, ``module:Class``, a file path (``dir/module`` or
``dir/module.py``, as the documentation's example uses), a dotted module, and
finally the ``shipmate.plugins`` entry-point group. Only the module that is
needed is imported, so the runner stays quick.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from types import ModuleType

from shipmate.plugin.base import PluginBase
from shipmate.plugin.errors import PluginError, PluginLoadError
from shipmate.plugin.info import PEInfo

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any

ENTRY_POINT_GROUP = "shipmate.plugins"

BUILTIN_PLUGINS: dict[str, str] = {
    "test": "shipmate.plugins.test_plugin:TestPlugin",
    "filesystem": "shipmate.plugins.filesystem:FilesystemPlugin",
    "docker": "shipmate.plugins.docker.plugin:DockerPlugin",
    "kubernetes": "shipmate.plugins.kubernetes.plugin:KubernetesPlugin",
}
"""Built-in plugin name -> ``module:Class``."""

ALIASES: dict[str, str] = {
    "test_plugin": "test",
    "bosun_test_plugin": "test",
    "filesystem_plugin": "filesystem",
    "docker-plugin": "docker",
    "docker_plugin": "docker",
    "k8s-plugin": "kubernetes",
    "k8s": "kubernetes",
    "kubernetes_plugin": "kubernetes",
    # module paths of the built-ins in DataRobot's package, so command prefixes written for it work
    "bosun.plugin.bosun_test_plugin": "test",
    "bosun.plugin.filesystem.filesystem_plugin": "filesystem",
    "bosun.plugin.docker.docker_plugin": "docker",
    "bosun.plugin.k8s.kubernetes_plugin": "kubernetes",
}
"""Other names accepted for the built-ins (DataRobot's ``--list-plugins`` aliases among them)."""


def builtin_aliases() -> dict[str, list[str]]:
    """Built-in name -> every name it answers to (for ``--list-plugins``), the name last."""
    table: dict[str, list[str]] = {name: [] for name in BUILTIN_PLUGINS}
    for alias, name in ALIASES.items():
        if "." not in alias:
            table[name].append(alias)
    for name, names in table.items():
        names.append(name)
    return table


def resolve_builtin(spec: str) -> str | None:
    """``module:Class`` of the built-in ``spec`` names, or None."""
    name = ALIASES.get(spec, spec)
    return BUILTIN_PLUGINS.get(name)


def load_plugin_class(spec: str) -> type[PluginBase]:
    """The plugin class ``spec`` names; ``PluginLoadError`` saying what was tried otherwise."""
    spec = spec.strip()
    if not spec:
        raise PluginLoadError("--plugin is empty: give a built-in name, a module path or a file path")
    target = resolve_builtin(spec)
    if target is not None:
        return _load_target(target, spec)
    _install_bosun_aliases()
    if ":" in spec and not os.path.exists(spec):
        return _load_target(spec, spec)
    path = _plugin_file(spec)
    if path is not None:
        return find_plugin_class(_import_file(path))
    module = _import_module_or_none(spec)
    if module is not None:
        return find_plugin_class(module)
    entry = _entry_point_target(spec)
    if entry is not None:
        return _load_target(entry, spec)
    known = ", ".join(BUILTIN_PLUGINS)
    raise PluginLoadError(
        f"plugin {spec!r} not found: not a built-in ({known}), no file {spec} or {spec}.py, "
        f"no importable module {spec!r}, no entry point {spec!r} in group {ENTRY_POINT_GROUP}"
    )


def build_plugin(
    spec: str | type[PluginBase],
    plugin_config: Mapping[str, Any],
    private_config_file: str | None = None,
    pe_info: PEInfo | Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> PluginBase:
    """Load and construct a plugin, positionally as the contract does."""
    cls = load_plugin_class(spec) if isinstance(spec, str) else spec
    try:
        return cls(dict(plugin_config), private_config_file, pe_info, dry_run)
    except PluginError:
        raise
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        raise PluginLoadError(f"could not build plugin {cls.__module__}.{cls.__name__}: {text}") from exc


def find_plugin_class(module: ModuleType) -> type[PluginBase]:
    """The one plugin class defined in ``module`` (not merely imported into it)."""
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__ and _is_plugin_class(value)
    ]
    if not found and hasattr(module, "__path__"):
        # a package whose __init__ re-exports the plugin class from one of its modules
        inner = module.__name__ + "."
        found = list(
            {
                value
                for value in vars(module).values()
                if isinstance(value, type) and value.__module__.startswith(inner) and _is_plugin_class(value)
            }
        )
    if not found:
        raise PluginLoadError(
            f"no plugin class in module {module.__name__} ({_where(module)}): "
            "define a class that subclasses shipmate.plugin.PluginBase (BosunPluginBase)"
        )
    if len(found) > 1:
        names = ", ".join(sorted(cls.__name__ for cls in found))
        raise PluginLoadError(
            f"more than one plugin class in module {module.__name__}: {names}; "
            f"keep one per module or name it as {module.__name__}:<Class>"
        )
    return found[0]


# -- internals ----------------------------------------------------------------------


def _is_plugin_class(value: type) -> bool:
    if value is PluginBase:
        return False
    if issubclass(value, PluginBase):
        return True
    # a plugin written against DataRobot's own package (installed next to Shipmate)
    return any(base.__name__ == "BosunPluginBase" for base in value.__mro__[1:])


def _where(module: ModuleType) -> str:
    return getattr(module, "__file__", None) or "built-in"


def _load_target(target: str, spec: str) -> type[PluginBase]:
    module_name, _, class_name = target.partition(":")
    module = _import(module_name, spec)
    if not class_name:
        return find_plugin_class(module)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not _is_plugin_class(cls):
        raise PluginLoadError(f"plugin {spec!r}: module {module_name} has no plugin class {class_name!r}")
    return cls


def _import(module_name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing == module_name or module_name.startswith(missing + "."):
            raise PluginLoadError(f"plugin {spec!r}: no module named {module_name!r}") from exc
        raise PluginLoadError(
            f"plugin {spec!r}: module {module_name} needs {missing!r}, which is not installed"
        ) from exc
    except PluginError:
        raise
    except Exception as exc:
        raise PluginLoadError(
            f"plugin {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _import_module_or_none(name: str) -> ModuleType | None:
    """Import ``name`` if it is a module that exists; errors inside it are reported, not hidden."""
    import importlib.util

    if not all(part.isidentifier() for part in name.split(".")):
        return None
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    return _import(name, name)


def _plugin_file(spec: str) -> str | None:
    """The Python file (or package directory) ``spec`` names as a path, or None."""
    for candidate in (spec, spec + ".py"):
        if os.path.isfile(candidate) and candidate.endswith(".py"):
            return os.path.abspath(candidate)
        if os.path.isdir(candidate) and os.path.isfile(os.path.join(candidate, "__init__.py")):
            return os.path.abspath(os.path.join(candidate, "__init__.py"))
    return None


def _import_file(path: str) -> ModuleType:
    """Import a plugin file under its base name, its directory first on ``sys.path``.

    The directory goes on ``sys.path`` so the plugin's sibling imports work, as
    with DataRobot's runner.
    """
    import importlib.util

    is_package = os.path.basename(path) == "__init__.py"
    directory = os.path.dirname(path)
    name = os.path.basename(directory) if is_package else os.path.splitext(os.path.basename(path))[0]
    search_dir = os.path.dirname(directory) if is_package else directory
    if search_dir not in sys.path:
        sys.path.insert(0, search_dir)
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == path:
        return existing
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[directory] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"plugin file {path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        del sys.modules[name]
        raise PluginLoadError(
            f"plugin file {path}: needs module {exc.name!r}, which is not installed"
        ) from exc
    except SyntaxError as exc:
        del sys.modules[name]
        raise PluginLoadError(f"plugin file {path}, line {exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise PluginLoadError(
            f"plugin file {path}: importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _entry_point_target(name: str) -> str | None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return str(entry.value)
    return None


def _install_bosun_aliases() -> None:
    """Let plugins written for DataRobot's package import its module paths, unchanged.

    Installed only when the real ``bosun`` package is absent.
    """
    from shipmate.plugin import compat

    compat.install()
