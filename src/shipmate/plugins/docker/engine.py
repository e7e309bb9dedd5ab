"""The narrow seam between the plugin and the Docker engine (the official ``docker`` SDK).

Everything that talks to the engine lives here; Docker's exceptions are turned
into ``EngineError`` (saying whether a retry may help) so nothing above this
module handles library exceptions.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipmate.plugins.docker.decisions import ContainerView

log = logging.getLogger(__name__)


class EngineError(Exception):
    """The engine refused or could not be reached. ``retryable``: a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn docker/requests exceptions raised while doing ``what`` into ``EngineError``."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except EngineError:
        raise
    except docker.errors.ImageNotFound as exc:
        raise EngineError(f"{what}: image not found: {_explain(exc)}") from None
    except docker.errors.NotFound as exc:
        raise EngineError(f"{what}: not found: {_explain(exc)}") from None
    except docker.errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in list(exc.build_log)[-8:])
        raise _disk_full_hint(EngineError(f"{what}: image build failed: {exc.msg}\n{tail.strip()}")) from None
    except docker.errors.APIError as exc:
        retryable = exc.status_code is None or exc.status_code >= 500
        raise _disk_full_hint(EngineError(f"{what}: {_explain(exc)}", retryable=retryable)) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineError(f"{what}: the Docker engine cannot be reached ({exc})", retryable=True) from None
    except docker.errors.DockerException as exc:
        raise EngineError(f"{what}: {exc}", retryable=True) from None


def _disk_full_hint(error: EngineError) -> EngineError:
    """Say what ENOSPC means for the engine, and what to do about it."""
    if "no space left on device" not in str(error).lower():
        return error
    return EngineError(
        f"{error}; the engine's disk is full: free space where its data-root lives "
        "(e.g. docker system prune, or remove unused model images)",
        retryable=error.retryable,
    )


def _explain(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    version: str
    api_version: str
    containers_running: int


class Engine:
    """A Docker engine, through one ``docker.DockerClient``."""

    def __init__(self, base_url: str | None = None, timeout: float = 120.0) -> None:
        import docker

        with translated("connecting to the Docker engine"):
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout))
            else:
                self._client = docker.from_env(version="auto", timeout=int(timeout))

    @property
    def client(self) -> Any:
        return self._client

    def close(self) -> None:
        self._client.close()

    # -- engine and network ----------------------------------------------------------

    def info(self) -> EngineInfo:
        with translated("asking the Docker engine for its version"):
            self._client.ping()
            version = self._client.version()
            info = self._client.info()
        return EngineInfo(
            version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            containers_running=int(info.get("ContainersRunning", 0)),
        )

    def network_exists(self, name: str) -> bool:
        with translated(f"looking up network {name}"):
            return any(n.name == name for n in self._client.networks.list(names=[name]))

    def create_network(self, name: str, labels: Mapping[str, str]) -> None:
        with translated(f"creating network {name}"):
            self._client.networks.create(name, driver="bridge", labels=dict(labels), check_duplicate=True)

    # -- images ------------------------------------------------------------------------

    def image_id(self, reference: str) -> str | None:
        """The image's id when present locally, else ``None`` (never pulls)."""
        import docker.errors

        with translated(f"inspecting image {reference}"):
            try:
                return str(self._client.images.get(reference).id)
            except docker.errors.ImageNotFound:
                return None

    def image_labels(self, reference: str) -> dict[str, str]:
        with translated(f"inspecting image {reference}"):
            image = self._client.images.get(reference)
            return dict(image.labels or {})

    def ensure_image(self, reference: str) -> str:
        """The image's id; pulled when missing locally, with an actionable error if that fails."""
        found = self.image_id(reference)
        if found:
            return found
        import docker.errors

        try:
            with translated(f"pulling image {reference}"):
                image = self._client.images.pull(reference)
        except EngineError as exc:
            raise EngineError(
                f"image {reference} is not present on the engine and could not be pulled ({exc}); "
                "build it locally (make -C images) or configure an image that is present"
            ) from None
        except docker.errors.DockerException as exc:  # pragma: no cover - translated above
            raise EngineError(str(exc)) from None
        return str(image.id)

    def build_model_image(
        self, tag: str, base_image: str, artifact: Path, model_file: str, labels: Mapping[str, str]
    ) -> str:
        """Base image + the package at ``/opt/ml/model/<model_file>``; returns the image id."""
        label_lines = " ".join(f'"{k}"="{v}"' for k, v in sorted(labels.items()))
        dockerfile = (
            f"FROM {base_image}\n"
            f"COPY model.mlpkg /opt/ml/model/{model_file}\n"
            + (f"LABEL {label_lines}\n" if label_lines else "")
        ).encode()
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            entry = tarfile.TarInfo("Dockerfile")
            entry.size = len(dockerfile)
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(dockerfile))
            info = tar.gettarinfo(str(artifact), arcname="model.mlpkg")
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(artifact, "rb") as handle:
                tar.addfile(info, handle)
        context.seek(0)
        with translated(f"building image {tag}"):
            image, _ = self._client.images.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False
            )
        return str(image.id)

    # -- containers -------------------------------------------------------------------

    def containers(self, filters: Mapping[str, Any]) -> list[ContainerView]:
        with translated("listing containers"):
            containers = self._client.containers.list(all=True, filters=dict(filters))
        return [view_of(c.attrs) for c in containers]

    def get(self, name: str) -> ContainerView | None:
        import docker.errors

        with translated(f"inspecting container {name}"):
            try:
                return view_of(self._client.containers.get(name).attrs)
            except docker.errors.NotFound:
                return None

    def run(self, files: tuple[str, bytes] | None = None, **kwargs: Any) -> ContainerView:
        """Create and start a container (``docker.containers.run`` arguments); ``files``, a
        directory and a tar archive, is extracted into it before it starts.

        A container that was created but could not start (a port already taken, say)
        is removed, so a failed attempt leaves nothing behind.
        """
        name = kwargs.get("name", "?")
        with translated(f"creating container {name}"):
            container = self._client.containers.create(**kwargs)
        try:
            if files is not None:
                with translated(f"writing files into container {name}"):
                    if not container.put_archive(*files):
                        raise EngineError(
                            f"writing files into container {name}: the engine refused the upload"
                        )
            with translated(f"starting container {name}"):
                container.start()
                container.reload()
        except EngineError:
            with suppress(Exception):
                container.remove(force=True)
            raise
        return view_of(container.attrs)

    def logs_tail(self, name: str, lines: int) -> str:
        import docker.errors

        with translated(f"reading the log of container {name}"):
            try:
                raw = self._client.containers.get(name).logs(tail=lines, stdout=True, stderr=True)
            except docker.errors.NotFound:
                return ""
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

    def stop_and_remove(self, name: str, timeout: int) -> bool:  # name or id
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout`` s) and remove; False if absent."""
        import docker.errors

        with translated(f"stopping container {name}"):
            try:
                container = self._client.containers.get(name)
            except docker.errors.NotFound:
                return False
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=timeout)
                container.remove(force=True)
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # removal already in progress
                    return True
                raise
        return True

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        with translated(f"running {' '.join(command)} in {name}"):
            result = self._client.containers.get(name).exec_run(command, stdout=True, stderr=True)
        output = result.output.decode("utf-8", errors="replace") if isinstance(result.output, bytes) else ""
        return int(result.exit_code or 0), output

    def put_files(self, name: str, directory: str, files: Mapping[str, str], mode: int = 0o644) -> None:
        """Write files into one directory of a container, in a single archive upload."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for filename, content in files.items():
                data = content.encode()
                entry = tarfile.TarInfo(filename)
                entry.size = len(data)
                entry.mode = mode
                entry.mtime = int(time.time())
                tar.addfile(entry, io.BytesIO(data))
        with translated(f"writing {', '.join(files)} into {name}:{directory}"):
            ok = self._client.containers.get(name).put_archive(directory, archive.getvalue())
        if not ok:
            raise EngineError(f"writing {', '.join(files)} into {name}: the engine refused the upload")

    def connect(self, network: str, container: str) -> None:
        with translated(f"connecting {container} to network {network}"):
            self._client.networks.get(network).connect(container)


def view_of(attrs: Mapping[str, Any]) -> ContainerView:
    """A ``ContainerView`` from ``docker inspect`` output."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    health = (state.get("Health") or {}).get("Status")
    ports: dict[int, int] = {}
    for key, bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, protocol = str(key).partition("/")
        for binding in bindings or []:
            if protocol == "tcp" and binding.get("HostPort") and int(port) not in ports:
                ports[int(port)] = int(binding["HostPort"])
    return ContainerView(
        name=str(attrs.get("Name", "")).lstrip("/"),
        id=str(attrs.get("Id", "")),
        status=str(state.get("Status", "unknown")),
        labels=dict(config.get("Labels") or {}),
        exit_code=state.get("ExitCode"),
        restart_count=int(attrs.get("RestartCount") or 0),
        created=str(attrs.get("Created", "")),
        started_at=str(state.get("StartedAt", "")),
        finished_at=str(state.get("FinishedAt", "")),
        health=health,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or None,
        ports=ports,
        image=str(config.get("Image", "")),
    )
