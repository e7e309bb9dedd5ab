"""``ShipmateClient``: the whole service API over httpx, with typed results and errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from shipmate.client import errors
from shipmate.client.models import (
    Accuracy,
    ActualsResult,
    AggregateResult,
    Alert,
    AlertRule,
    Deployment,
    DeploymentPage,
    DesiredState,
    Drift,
    DriftSettings,
    Environment,
    Event,
    EventPage,
    ModelPackage,
    Report,
    ReportResult,
    ServiceHealth,
    TokenInfo,
)
from shipmate.common.masking import mask
from shipmate.plugin.status import ActionStatus

API = "/api/v1"
CHUNK = 1024 * 1024

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) as an upload or download advances."""

T = TypeVar("T", bound=BaseModel)


class ShipmateClient:
    """A synchronous client; one instance keeps one connection pool. Use it as a context manager.

    ``transport`` is handed to httpx (tests pass ``httpx.MockTransport`` or a WSGI/ASGI bridge).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "shipmate-client"},
            transport=transport,
            timeout=timeout,
            verify=verify,
        )
        self._token_hint = mask(token)

    def __repr__(self) -> str:
        return f"ShipmateClient({self.base_url!r}, token={self._token_hint!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ShipmateClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, API + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise errors.ServiceUnavailable(f"{method} {path}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise errors.ServiceUnavailable(f"{method} {path}: cannot reach {self.base_url}: {exc}") from None
        self._raise_for_status(response)
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        raise errors.error_for(response.status_code, body)

    def _get(self, model: type[T], path: str, **kwargs: Any) -> T:
        return model.model_validate(self._request("GET", path, **kwargs).json())

    def _send(self, model: type[T], method: str, path: str, **kwargs: Any) -> T:
        return model.model_validate(self._request(method, path, **kwargs).json())

    # ---- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/health").json()
        return result

    # ---- monitoring ----------------------------------------------------------------------------

    def post_monitoring_aggregates(self, records: Sequence[dict[str, Any]] | bytes) -> AggregateResult:
        """Send minute aggregates (their JSON form, or the encoded ``{"records": [...]}`` body)."""
        import orjson

        body = records if isinstance(records, bytes) else orjson.dumps({"records": list(records)})
        return self._send(
            AggregateResult,
            "POST",
            "/monitoring/aggregates",
            content=body,
            headers={"Content-Type": "application/json"},
        )

    def post_monitoring_predictions(self, records: Sequence[dict[str, Any]]) -> AggregateResult:
        """Send prediction records (association ids with their predictions) for accuracy."""
        import orjson

        return self._send(
            AggregateResult,
            "POST",
            "/monitoring/predictions",
            content=orjson.dumps({"records": list(records)}),
            headers={"Content-Type": "application/json"},
        )

    def post_actuals(self, dep_id: str, rows: Sequence[dict[str, Any]]) -> ActualsResult:
        """Report actuals (``associationId``, ``actualValue``, optional ``timestamp``, ``wasActedOn``)."""
        return self._send(ActualsResult, "POST", f"/deployments/{dep_id}/actuals", json={"data": list(rows)})

    def accuracy(
        self,
        dep_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        resolution: str = "day",
    ) -> Accuracy:
        """Accuracy of the predictions made in [since, until) that have actuals (default: 7 days)."""
        params: dict[str, Any] = {"resolution": resolution}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        return self._get(Accuracy, f"/deployments/{dep_id}/accuracy", params=params)

    def alerts(self, *, deployment_id: str | None = None, state: str | None = None) -> list[Alert]:
        """Alerts, newest first."""
        params = {k: v for k, v in {"deploymentId": deployment_id, "state": state}.items() if v is not None}
        return [Alert.model_validate(a) for a in self._request("GET", "/alerts", params=params).json()]

    def alert_rules(self, dep_id: str) -> list[AlertRule]:
        return [
            AlertRule.model_validate(r)
            for r in self._request("GET", f"/deployments/{dep_id}/alert-rules").json()
        ]

    def update_alert_rule(self, dep_id: str, name: str, **changes: Any) -> AlertRule:
        """Change a rule: ``threshold``, ``clearThreshold``, ``windowMinutes``, ``enabled``, ``metric``."""
        body = {k: v for k, v in changes.items() if v is not None}
        return self._send(AlertRule, "PUT", f"/deployments/{dep_id}/alert-rules/{name}", json=body)

    def service_health(
        self,
        dep_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        resolution: str = "hour",
        slow_threshold_ms: float | None = None,
        model_id: str | None = None,
    ) -> ServiceHealth:
        """Service health of a deployment over [since, until) (default: the last 24 h)."""
        params: dict[str, Any] = {"resolution": resolution}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        if slow_threshold_ms is not None:
            params["slowThresholdMs"] = slow_threshold_ms
        if model_id is not None:
            params["modelId"] = model_id
        return self._get(ServiceHealth, f"/deployments/{dep_id}/service-health", params=params)

    def drift(
        self,
        dep_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        metric: str | None = None,
        features: list[str] | None = None,
        model_id: str | None = None,
        windows: bool = False,
    ) -> Drift:
        """Data and prediction drift of a deployment over [since, until) (default: the last 24 h)."""
        params: dict[str, Any] = {"windows": "true" if windows else "false"}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        if metric is not None:
            params["metric"] = metric
        if features:
            params["feature"] = list(features)
        if model_id is not None:
            params["modelId"] = model_id
        return self._get(Drift, f"/deployments/{dep_id}/drift", params=params)

    def drift_settings(self, dep_id: str) -> DriftSettings:
        return self._get(DriftSettings, f"/deployments/{dep_id}/drift/settings")

    def set_drift_settings(self, dep_id: str, settings: dict[str, Any]) -> DriftSettings:
        """Replace the drift settings (``metric``, ``minRows``, ``referenceSince``/``Until``, ``starred``)."""
        return self._send(DriftSettings, "PUT", f"/deployments/{dep_id}/drift/settings", json=settings)

    # ---- model packages ----------------------------------------------------------------------

    def upload_model_package(
        self, path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> ModelPackage:
        """Stream a ``.mlpkg`` to the service (never read whole into memory)."""
        file = Path(path)
        size = file.stat().st_size

        def chunks() -> Iterator[bytes]:
            done = 0
            with file.open("rb") as handle:
                while block := handle.read(CHUNK):
                    done += len(block)
                    if progress is not None:
                        progress(done, size)
                    yield block

        return self._send(
            ModelPackage,
            "POST",
            "/model-packages",
            params={"filename": file.name},
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=httpx.Timeout(self._timeout, write=None, read=max(self._timeout, 300.0)),
        )

    def list_model_packages(
        self, *, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ModelPackage]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if name is not None:
            params["name"] = name
        body = self._request("GET", "/model-packages", params=params).json()
        return [ModelPackage.model_validate(item) for item in body["items"]]

    def get_model_package(self, package_id: str) -> ModelPackage:
        return self._get(ModelPackage, f"/model-packages/{package_id}")

    def download_model_package(
        self, package_id: str, dest_path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> str:
        """Stream a package to ``dest_path``, verify its SHA-256, return it.

        The bytes go to a temporary file beside the destination, renamed into place only
        once the checksum matches, so ``dest_path`` never holds a partial or corrupt package.
        """
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        digest = hashlib.sha256()
        url = f"{API}/model-packages/{package_id}/download"
        try:
            with self._http.stream("GET", url, timeout=httpx.Timeout(self._timeout, read=300.0)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(response)
                expected = response.headers.get("X-Shipmate-Sha256")
                total = (
                    int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
                )
                done = 0
                with partial.open("wb") as handle:
                    for block in response.iter_bytes(CHUNK):
                        digest.update(block)
                        handle.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            actual = digest.hexdigest()
            if expected and actual != expected:
                raise errors.ChecksumMismatch(
                    f"model package {package_id}: downloaded SHA-256 {actual} "
                    f"differs from the announced {expected}"
                )
            os.replace(partial, dest)
            return actual
        except httpx.TransportError as exc:
            raise errors.ServiceUnavailable(f"download of {package_id} failed: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)

    # ---- environments ------------------------------------------------------------------------

    def create_environment(
        self,
        name: str,
        platform: str,
        *,
        description: str = "",
        config: dict[str, Any] | None = None,
        plugin_config: dict[str, Any] | None = None,
    ) -> Environment:
        body = {
            "name": name,
            "platform": platform,
            "description": description,
            "config": config or {},
            "pluginConfig": plugin_config or {},
        }
        return self._send(Environment, "POST", "/environments", json=body)

    def list_environments(self) -> list[Environment]:
        body = self._request("GET", "/environments").json()
        return [Environment.model_validate(item) for item in body["items"]]

    def get_environment(self, env_id: str) -> Environment:
        return self._get(Environment, f"/environments/{env_id}")

    def update_environment(
        self,
        env_id: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        plugin_config: dict[str, Any] | None = None,
    ) -> Environment:
        body = {"description": description, "config": config, "pluginConfig": plugin_config}
        return self._send(
            Environment,
            "PATCH",
            f"/environments/{env_id}",
            json={k: v for k, v in body.items() if v is not None},
        )

    def delete_environment(self, env_id: str) -> None:
        self._request("DELETE", f"/environments/{env_id}")

    # ---- the agent's side --------------------------------------------------------------------

    def desired_state(self, env_id: str) -> DesiredState:
        return self._get(DesiredState, f"/environments/{env_id}/desired-state")

    def report(self, env_id: str, reports: Sequence[Report]) -> ReportResult:
        """Send a batch of reports (one transaction on the service)."""
        body = {"reports": [report.to_wire() for report in reports]}
        return self._send(ReportResult, "POST", f"/environments/{env_id}/reports", json=body)

    def report_health(
        self,
        env_id: str,
        status: ActionStatus | str,
        message: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        agent_version: str | None = None,
    ) -> Environment:
        body: dict[str, Any] = {"status": ActionStatus.parse(status).value, "message": message, "data": data}
        if agent_version is not None:
            body["agentVersion"] = agent_version
        return self._send(Environment, "POST", f"/environments/{env_id}/health", json=body)

    def post_event(
        self,
        env_id: str,
        type: str,
        message: str | None = None,
        deployment_id: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        status: ActionStatus | str | None = None,
    ) -> Event:
        body: dict[str, Any] = {"type": type, "message": message, "deploymentId": deployment_id, "data": data}
        if status is not None:
            body["status"] = ActionStatus.parse(status).value
        return self._send(Event, "POST", f"/environments/{env_id}/events", json=body)

    # ---- deployments -------------------------------------------------------------------------

    def create_deployment(
        self,
        env_id: str,
        model_package_id: str,
        *,
        name: str,
        description: str = "",
        key_value_config: dict[str, Any] | None = None,
        active: bool = True,
    ) -> Deployment:
        body = {
            "environmentId": env_id,
            "modelPackageId": model_package_id,
            "name": name,
            "description": description,
            "keyValueConfig": key_value_config or {},
            "active": active,
        }
        return self._send(Deployment, "POST", "/deployments", json=body)

    def get_deployment(self, dep_id: str) -> Deployment:
        return self._get(Deployment, f"/deployments/{dep_id}")

    def list_deployments(
        self,
        *,
        environment_id: str | None = None,
        state: str | None = None,
        desired_state: str | None = None,
        name: str | None = None,
        model_package_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> DeploymentPage:
        params = {
            "environmentId": environment_id,
            "state": state,
            "desiredState": desired_state,
            "name": name,
            "modelPackageId": model_package_id,
            "limit": limit,
            "offset": offset,
        }
        return self._get(
            DeploymentPage, "/deployments", params={k: v for k, v in params.items() if v is not None}
        )

    def update_deployment(
        self,
        dep_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        key_value_config: dict[str, Any] | None = None,
    ) -> Deployment:
        body = {"name": name, "description": description, "keyValueConfig": key_value_config}
        return self._send(
            Deployment,
            "PATCH",
            f"/deployments/{dep_id}",
            json={k: v for k, v in body.items() if v is not None},
        )

    def replace_model(self, dep_id: str, package_id: str) -> Deployment:
        return self._send(
            Deployment, "POST", f"/deployments/{dep_id}/replace-model", json={"modelPackageId": package_id}
        )

    def deactivate(self, dep_id: str) -> Deployment:
        return self._send(Deployment, "POST", f"/deployments/{dep_id}/deactivate")

    def activate(self, dep_id: str) -> Deployment:
        return self._send(Deployment, "POST", f"/deployments/{dep_id}/activate")

    def relaunch(self, dep_id: str) -> Deployment:
        return self._send(Deployment, "POST", f"/deployments/{dep_id}/relaunch")

    def delete(self, dep_id: str, force: bool = False) -> Deployment:
        """Ask for removal; with ``force`` it is gone from the service at once (the agent still tries)."""
        return self._send(
            Deployment, "DELETE", f"/deployments/{dep_id}", params={"force": str(force).lower()}
        )

    # ---- events ------------------------------------------------------------------------------

    def events(
        self,
        *,
        environment_id: str | None = None,
        deployment_id: str | None = None,
        types: Sequence[str] = (),
        after: int = 0,
        wait: float = 0,
        limit: int = 100,
        since: str | None = None,
        until: str | None = None,
    ) -> EventPage:
        """Events after ``after``; with ``wait`` > 0 a long poll that returns as soon as one exists."""
        params: dict[str, Any] = {"after": after, "wait": wait, "limit": limit}
        if environment_id is not None:
            params["environmentId"] = environment_id
        if deployment_id is not None:
            params["deploymentId"] = deployment_id
        if types:
            params["type"] = list(types)
        if since is not None:
            params["since"] = since
        if until is not None:
            params["until"] = until
        return self._get(EventPage, "/events", params=params, timeout=self._timeout + wait)

    def follow_events(
        self,
        *,
        after: int = 0,
        wait: float = 25.0,
        retry_delay: float = 1.0,
        stop: Callable[[], bool] = lambda: False,
        **filters: Any,
    ) -> Iterator[Event]:
        """Every event after ``after``, in order, for ever (or until ``stop()``); reconnects on outages."""
        cursor = after
        while not stop():
            try:
                page = self.events(after=cursor, wait=wait, **filters)
            except errors.ServiceUnavailable:
                time.sleep(retry_delay)
                continue
            yield from page.events
            cursor = page.cursor

    # ---- tokens ------------------------------------------------------------------------------

    def create_token(
        self, kind: str = "agent", environment_id: str | None = None, *, name: str | None = None
    ) -> tuple[TokenInfo, str]:
        """Create a token; returns its record and the secret, which the service will never show again."""
        body = {"name": name or f"{kind} token", "kind": kind, "environmentId": environment_id}
        result = self._request("POST", "/tokens", json=body).json()
        return TokenInfo.model_validate(result["token"]), str(result["secret"])

    def list_tokens(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        body = self._request("GET", "/tokens", params={"includeRevoked": str(include_revoked).lower()}).json()
        return [TokenInfo.model_validate(item) for item in body["items"]]

    def revoke_token(self, token_id: str) -> TokenInfo:
        return self._send(TokenInfo, "DELETE", f"/tokens/{token_id}")
