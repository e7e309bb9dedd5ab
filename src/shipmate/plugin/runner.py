"""``bosun-plugin-runner``: run one plugin action from the command line.

The agent runs this once per action (``command`` + ``--config --action
--status-file``), so start-up time is most of its cost: argparse only, and every
import beyond the SDK's core happens inside the branch that needs it.

Bad input never ends in a traceback: one line on stderr, a non-zero exit, and,
when ``--status-file`` was given, a ``failing`` status file saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the runner ms
if TYPE_CHECKING:
    from typing import Any, NoReturn, TextIO

    from shipmate.plugin.status import ActionStatusInfo

PROG = "bosun-plugin-runner"
REQUIRED_FOR_RUN = ("plugin", "config", "action", "status_file")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SHOW_STATUS_LIMIT = 4096

EXIT_USAGE = 1
"""Exit code for bad input (flags, configs, plugin not found, unwritable status file)."""
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: reported in one line, exit ``EXIT_USAGE``."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 1 (argparse's 2 means "warning" here)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Run one action of a management-agent plugin (built-in: filesystem, test, docker, kubernetes; "
            "or a module, file or entry point of your own) and write its status file."
        ),
    )
    parser.add_argument(
        "--plugin", help="built-in name, dotted module (module:Class), or file (dir/module[.py])"
    )
    parser.add_argument("--config", help="action config YAML (pluginConfig, peInfo, deploymentInfo)")
    parser.add_argument("--private-config", help="the plugin's own config file, passed to it as a path")
    parser.add_argument("--action", help="the action to run (see --list-actions)")
    parser.add_argument("--status-file", help="where to write the YAML status of the action")
    parser.add_argument("--show-status", action="store_true", help="print the status file after the run")
    parser.add_argument(
        "--exit-codes",
        action="store_true",
        help="exit with the status: passing 0, failing 1, warning 2, unknown 3",
    )
    parser.add_argument("--dry-run", action="store_true", help="ask the plugin not to change anything")
    parser.add_argument("--list-actions", action="store_true", help="print the action names and exit")
    parser.add_argument("--list-plugins", action="store_true", help="print the built-in plugins and exit")
    parser.add_argument(
        "--gen-config",
        nargs="?",
        const="-",
        metavar="ACTION|FILE",
        help="write a commented sample action config: --gen-config ACTION (to stdout), "
        "or --action ACTION --gen-config FILE",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    parser.add_argument("--logfile", help="log to this file instead of stderr")
    parser.add_argument("--log-config", help="YAML for logging.config.dictConfig (overrides the two above)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bosun-plugin-runner`` and ``shipmate plugin run``; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(arguments)
    except UsageError as exc:
        _fail_line(str(exc))
        status_file = _flag_value(arguments, "--status-file")
        if status_file:
            _write_failure(status_file, f"Invalid {PROG} arguments: {exc}", [])
        return EXIT_USAGE
    try:
        if args.gen_config is not None:
            return _gen_config(args.gen_config, args.action)
        if args.list_plugins:
            return _list_plugins()
        if args.list_actions:
            return _list_actions()
        return _run(args)
    except UsageError as exc:
        _fail_line(str(exc))
        return EXIT_USAGE


def _flag_value(arguments: list[str], flag: str) -> str | None:
    """The value of ``flag`` in raw arguments, for reporting a usage error in the status file."""
    for index, argument in enumerate(arguments):
        if argument == flag and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(flag + "="):
            return argument.split("=", 1)[1]
    return None


# -- listing and samples ------------------------------------------------------------


def _list_actions() -> int:
    from shipmate.plugin.actions import Action

    sys.stdout.write("".join(f"{action.value}\n" for action in Action))
    return 0


def _list_plugins() -> int:
    from shipmate.plugin.loader import builtin_aliases

    sys.stdout.write("".join(",".join(names) + "\n" for names in builtin_aliases().values()))
    return 0


def _gen_config(value: str, action: str | None) -> int:
    from shipmate.plugin.actions import Action
    from shipmate.plugin.errors import ConfigError
    from shipmate.plugin.samples import sample_config

    known = {a.value for a in Action}
    if action is None and value in known:
        action, target = value, "-"
    else:
        target = value
    if action is None:
        raise UsageError(
            "--gen-config needs an action: --gen-config ACTION, or --action ACTION --gen-config FILE"
        )
    try:
        text = sample_config(action)
    except ConfigError as exc:
        raise UsageError(f"cannot generate a sample config: {exc}") from None
    if target == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write sample config to {target}: {exc.strerror}") from None
    return 0


# -- running an action --------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    status_file: str | None = args.status_file
    action_name: str = args.action or "<none>"
    try:
        _check_status_file_writable(status_file)
        if _wants_logging_now(args):
            _configure_logging(args)
        missing = [name for name in REQUIRED_FOR_RUN if not getattr(args, name)]
        if missing:
            flags = " ".join("--" + name.replace("_", "-") for name in missing)
            raise UsageError(
                f"missing required argument(s): {flags} "
                "(a run needs --plugin --config --action --status-file)"
            )
        result = _run_action(args)
    except _RunFailure as failure:
        _fail_line(failure.message)
        if status_file:
            _write_failure(status_file, failure.status_message, failure.secrets, show=args.show_status)
        return EXIT_USAGE
    except UsageError as exc:
        _fail_line(str(exc))
        if status_file and not isinstance(exc, _StatusFileUnwritable):
            message = f"Exception occurred while running action {action_name} : error {exc}"
            _write_failure(status_file, message, [], show=args.show_status)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _fail_line(f"action {action_name} interrupted")
        if status_file:
            _write_failure(status_file, f"Action {action_name} was interrupted before it finished", [])
        return EXIT_INTERRUPTED
    assert status_file is not None
    if args.show_status:
        _show_status(status_file)
    return result.status.exit_code if args.exit_codes else 0


class _RunFailure(Exception):
    """A failure before the action ran: ``message`` for stderr, ``status_message`` for the status file."""

    def __init__(self, message: str, status_message: str, secrets: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.status_message = status_message
        self.secrets = secrets


class _StatusFileUnwritable(UsageError):
    pass


def _run_action(args: argparse.Namespace) -> ActionStatusInfo:
    import signal

    from shipmate.plugin.actions import invoke, parse_action
    from shipmate.plugin.config import ActionConfig, inject_environment, sanitized, scrub, secret_values
    from shipmate.plugin.errors import ConfigError, PluginError
    from shipmate.plugin.loader import build_plugin
    from shipmate.plugin.yamlio import import_yaml

    import_yaml()
    name: str = args.action
    try:
        action = parse_action(name)
    except ConfigError as exc:
        raise _RunFailure(
            str(exc), f"Exception occurred while running action {name} : error {exc}", []
        ) from None
    try:
        config = ActionConfig.load(args.config)
        config.check_for(action)
    except ConfigError as exc:
        raise _RunFailure(
            str(exc), f"Exception occurred while running action {name} : error {exc}", []
        ) from None
    plugin_config = inject_environment(config.plugin_config)
    secrets = secret_values(plugin_config)
    _install_log_scrubber(secrets)
    try:
        plugin = build_plugin(args.plugin, plugin_config, args.private_config, config.pe_info, args.dry_run)
    except PluginError as exc:
        text = scrub(str(exc), secrets)
        raise _RunFailure(
            text, f"Exception occurred while loading plugin object for action {name}: error {text}", secrets
        ) from None
    if not _logging_configured and "logging" in sys.modules:
        _configure_logging(args)  # the plugin logs: give it the handler the flags ask for
        _install_log_scrubber(secrets)
    log = _runner_logger()
    if log is not None:
        log.debug("action %s, pluginConfig %s", name, sanitized(plugin_config))
    plugin._set_endpoint_info(None if config.endpoint_info is None else config.to_dict().get("endpointInfo"))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.perf_counter()
    result = invoke(plugin, action, config.deployment_info, config.endpoint_info)
    if log is not None:
        log.info("action %s: %s in %.3f s", name, result.status.value, time.perf_counter() - started)
    _write_status(args.status_file, result, secrets)
    return result


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _check_status_file_writable(path: str | None) -> None:
    """Refuse to run an action whose outcome could not be reported."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise _StatusFileUnwritable(f"status file {path} is a directory")
    if not os.path.isdir(directory):
        raise _StatusFileUnwritable(f"status file {path}: directory {directory} does not exist")
    target = path if os.path.exists(path) else directory
    if not os.access(target, os.W_OK):
        raise _StatusFileUnwritable(f"status file {path} is not writable")


def _write_status(path: str, result: ActionStatusInfo, secrets: list[str]) -> None:
    """Write the status file atomically (aside, then rename), secrets masked."""
    from shipmate.plugin.config import scrub

    if secrets:
        result.msg = scrub(result.msg, secrets)
        result.data = scrub(result.data, secrets)
    text = result.to_yaml()
    aside = f"{path}.{os.getpid()}.tmp"
    try:
        with open(aside, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(aside, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(aside)
        raise _StatusFileUnwritable(f"status file {path} could not be written: {exc.strerror}") from None


def _write_failure(path: str, message: str, secrets: list[str], show: bool = False) -> None:
    from shipmate.plugin.status import ActionStatus, ActionStatusInfo, DeploymentState

    try:
        _write_status(
            path, ActionStatusInfo(ActionStatus.ERROR, msg=message, state=DeploymentState.ERRORED), secrets
        )
    except UsageError as exc:
        _fail_line(str(exc))
        return
    if show:
        _show_status(path)


def _show_status(path: str, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    with open(path, encoding="utf-8") as handle:
        text = handle.read(SHOW_STATUS_LIMIT)
    stream.write(f"\n-- action status --\n{text}")
    stream.flush()


def _fail_line(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")


# -- logging ------------------------------------------------------------------------
#
# ``logging`` costs the runner several milliseconds to import (traceback, linecache,
# tokenize), so it is configured only when someone will use it: a logging flag was
# given, or the plugin (or a library it uses) imported it.

_logging_configured = False


def _wants_logging_now(args: argparse.Namespace) -> bool:
    """Validate the logging flags; True when they ask for logging whatever the plugin does."""
    level = str(args.log_level).upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"--log-level {args.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return bool(args.logfile or args.log_config or level == "DEBUG" or "logging" in sys.modules)


def _runner_logger() -> Any:
    if not _logging_configured:
        return None
    import logging

    return logging.getLogger("shipmate.plugin.runner")


def _configure_logging(args: argparse.Namespace) -> None:
    global _logging_configured
    import logging

    _logging_configured = True
    if args.log_config:
        _configure_from_file(args.log_config)
        return
    level = str(args.log_level).upper()
    handler: logging.Handler
    if args.logfile:
        try:
            handler = logging.FileHandler(args.logfile, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--logfile {args.logfile}: {exc.strerror}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _configure_from_file(path: str) -> None:
    import logging.config

    from shipmate.plugin.config import load_private_config
    from shipmate.plugin.errors import ConfigError

    try:
        logging.config.dictConfig(load_private_config(path))
    except ConfigError as exc:
        raise UsageError(f"--log-config: {exc}") from None
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise UsageError(f"--log-config {path}: not a valid logging configuration: {exc}") from None


def _install_log_scrubber(secrets: list[str]) -> None:
    """Mask the secrets in every log record, whichever handler writes it."""
    if not secrets or not _logging_configured:
        return
    import logging

    from shipmate.plugin.config import scrub

    class _Scrubber(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            cleaned = scrub(message, secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and not record.exc_text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), secrets)
            return True

    scrubber = _Scrubber()
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)


if __name__ == "__main__":
    sys.exit(main())
