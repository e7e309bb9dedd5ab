"""Assemble an agent from its settings, and run it as a process (signals, metrics endpoint).

Used by ``shipmate agent``, ``shipmate demo`` and the benchmarks, so each builds
the agent the same way.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from shipmate.agent.config import AgentSettings
from shipmate.agent.drivers import CommandDriver, InProcessDriver, base_plugin_config
from shipmate.agent.metrics import MetricsServer
from shipmate.agent.ports import ControlPlane, EnvironmentDescription, PluginDriver
from shipmate.agent.runtime import Agent

log = logging.getLogger(__name__)


def driver_factory(settings: AgentSettings) -> Callable[[EnvironmentDescription], PluginDriver]:
    """How to build the plugin driver once the environment is known."""
    plugin = settings.plugin
    token = settings.token_text()

    def build(environment: EnvironmentDescription) -> PluginDriver:
        config = base_plugin_config(environment, settings.service_url, plugin.config, command=plugin.command)
        if plugin.is_external:
            return CommandDriver(
                plugin.command_words,
                config,
                environment,
                Path(settings.work_dir) / "actions",
                token,
                verify_ssl=settings.verify_ssl,
            )
        assert plugin.name is not None
        return InProcessDriver.for_spec(
            plugin.name,
            config,
            str(plugin.private_config) if plugin.private_config else None,
            environment,
            token,
            dry_run=plugin.dry_run,
        )

    return build


def check_plugin(settings: AgentSettings) -> None:
    """Fail fast (``PluginLoadError``/``ConfigError``) when an in-process plugin or its config is wrong."""
    plugin = settings.plugin
    if plugin.is_external:
        import shutil

        program = plugin.command_words[0]
        if shutil.which(program) is None and not Path(program).is_file():
            raise FileNotFoundError(f"plugin.command: {program!r} is not an executable on PATH or a file")
        return
    if plugin.private_config is not None and not Path(plugin.private_config).is_file():
        where = "" if Path(plugin.private_config).is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(f"plugin.privateConfig: {plugin.private_config} does not exist{where}")
    from shipmate.plugin.loader import load_plugin_class

    assert plugin.name is not None
    load_plugin_class(plugin.name)


def build_agent(settings: AgentSettings, service: ControlPlane | None = None) -> Agent:
    if service is None:
        from shipmate.agent.service_client import ServiceControlPlane

        service = ServiceControlPlane.connect(
            settings.service_url,
            settings.token_text(),
            verify=settings.verify_ssl,
            timeout=max(30.0, settings.intervals.feed_wait + 10),
        )
    return Agent(settings, service, driver_factory(settings))


def run_agent(settings: AgentSettings, *, install_signals: bool = True) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean shutdown)."""
    agent = build_agent(settings)
    server: MetricsServer | None = None
    if settings.metrics.enabled:
        server = MetricsServer(agent.metrics, agent.health, settings.metrics.host, settings.metrics.port)
        server.start()
        log.info(
            "metrics and health on http://%s:%d/metrics and /healthz", settings.metrics.host, server.port
        )
    if install_signals and threading.current_thread() is threading.main_thread():

        def _stop(signum: int, _frame: object) -> None:
            log.info("received %s: finishing in-flight actions, then stopping", signal.Signals(signum).name)
            agent.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    try:
        return agent.run()
    finally:
        if server is not None:
            server.close()
        close = getattr(agent.service, "close", None)
        if callable(close):
            close()
