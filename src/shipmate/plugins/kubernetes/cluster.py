"""The thin I/O layer: exactly the Kubernetes API calls the plugin makes.

Objects travel as plain dicts in the API's JSON shape (responses are read raw,
not through the client's models), so the pure rendering and judging modules
never see a client type. Every ``ApiException`` and connection error is turned
into a ``KubernetesApiError`` whose message says what failed and what to check.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shipmate.plugins.kubernetes.apis import KNOWN_VERSIONS, PLURALS, ApiVersions, choose_versions
from shipmate.plugins.kubernetes.settings import IN_CLUSTER, KubernetesSettings

log = logging.getLogger(__name__)

FIELD_MANAGER = "shipmate"
REPLICAS_FIELD_MANAGER = "shipmate-replicas"
"""Owns a Deployment's ``spec.replicas`` while it is handed over to its HPA (see the plugin)."""
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class KubernetesApiError(Exception):
    """A Kubernetes API call failed; the message is meant for a platform engineer.

    ``retryable`` says whether trying again later may succeed (connection
    problems, 409, 429, 5xx) or a person must change something (401, 403, 422…).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def resolve_namespace(settings: KubernetesSettings, context_namespace: str | None) -> str:
    """``kubeNamespace``, else the pod's own namespace in-cluster, else the context's, else ``default``."""
    if settings.kube_namespace:
        return settings.kube_namespace
    if settings.kube_config_context == IN_CLUSTER and os.path.exists(SERVICE_ACCOUNT_NAMESPACE_FILE):
        with open(SERVICE_ACCOUNT_NAMESPACE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    return context_namespace or "default"


class Cluster:
    """One namespace of one cluster, reached through a real ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self._apis: dict[str, Any] = {}
        self._versions: ApiVersions | None = None

    @classmethod
    def connect(cls, settings: KubernetesSettings) -> Cluster:
        """Build a client from the in-cluster service account or a kubeconfig context."""
        from kubernetes import client
        from kubernetes import config as _config
        from kubernetes.config.config_exception import ConfigException

        config: Any = _config  # the client's config loaders are untyped
        context_namespace: str | None = None
        try:
            if settings.kube_config_context == IN_CLUSTER:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
            else:
                configuration = client.Configuration()
                config.load_kube_config(
                    config_file=settings.kube_config_file,
                    context=settings.kube_config_context,
                    client_configuration=configuration,
                )
                contexts, active = config.list_kube_config_contexts(config_file=settings.kube_config_file)
                chosen = next((c for c in contexts if c["name"] == settings.kube_config_context), active)
                context_namespace = (chosen or {}).get("context", {}).get("namespace")
        except ConfigException as exc:
            where = (
                "the pod's service account (IN_CLUSTER)"
                if settings.kube_config_context == IN_CLUSTER
                else (
                    f"kubeconfig context {settings.kube_config_context!r}"
                    + (f" in {settings.kube_config_file}" if settings.kube_config_file else "")
                )
            )
            raise KubernetesApiError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
        except OSError as exc:
            raise KubernetesApiError(f"cannot read the kubeconfig: {exc}") from None
        configuration.retries = 1
        return cls(client.ApiClient(configuration), resolve_namespace(settings, context_namespace))

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def close(self) -> None:
        self.api_client.close()

    # -- plumbing --------------------------------------------------------------------

    def _api(self, class_name: str) -> Any:
        if class_name not in self._apis:
            from kubernetes import client

            self._apis[class_name] = getattr(client, class_name)(self.api_client)
        return self._apis[class_name]

    def _call(
        self, what: str, method: Callable[..., Any], *args: Any, namespaced: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        with translate_errors(what, self, namespaced=namespaced):
            response = method(*args, _preload_content=False, **kwargs)
            data = response.data
        loaded = json.loads(data) if data else {}
        return loaded if isinstance(loaded, dict) else {}

    def _rest(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        namespaced: bool = True,
    ) -> dict[str, Any]:
        """One REST call by path: every kind and version the server serves, through the client."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        with translate_errors(what, self, namespaced=namespaced):
            data = self._send(method, path, query or [], headers, body)
        loaded = json.loads(data) if data else {}
        return loaded if isinstance(loaded, dict) else {}

    def _send(
        self, method: str, path: str, query: list[tuple[str, Any]], headers: dict[str, str], body: Any
    ) -> bytes:
        from kubernetes.client.exceptions import ApiException

        client = self.api_client
        if hasattr(client, "param_serialize"):  # the client generated since v35
            request = client.param_serialize(
                method,
                path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = client.call_api(*request)
            response.read()
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(
                    http_resp=response, body=response.data.decode("utf-8", "replace"), data=None
                )
            return bytes(response.data)
        response = client.call_api(  # the older client
            path,
            method,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        return bytes(response.data)

    def api_versions(self) -> ApiVersions:
        """The version of each kind this server serves (discovery, asked once per connection)."""
        if self._versions is None:
            core = self._rest("discover the core API (/api)", "GET", "/api", namespaced=False)
            groups = self._rest("discover the API groups (/apis)", "GET", "/apis", namespaced=False)
            served = list(core.get("versions") or [])
            for group in groups.get("groups") or []:
                served.extend(v.get("groupVersion", "") for v in group.get("versions") or [])
            self._versions = choose_versions(served)
        return self._versions

    def version_of(self, kind: str) -> str:
        """The API version to use for ``kind``; a ``KubernetesApiError`` if the server serves none."""
        version = self.api_versions().of(kind)
        if version is None:
            raise KubernetesApiError(
                f"this Kubernetes cluster does not serve {kind} in any version the plugin knows "
                f"({', '.join(KNOWN_VERSIONS[kind])}): it is too old or the API is disabled"
            )
        return version

    def _path(self, kind: str, name: str | None = None) -> str:
        version = self.version_of(kind)
        prefix = f"/apis/{version}" if "/" in version else f"/api/{version}"
        path = f"{prefix}/namespaces/{quote(self.namespace, safe='')}/{PLURALS[kind]}"
        return f"{path}/{quote(name, safe='')}" if name else path

    # -- the calls -------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._call("read the server version", self._api("VersionApi").get_code, namespaced=False)

    def read_namespace(self) -> dict[str, Any] | None:
        try:
            return self._call(
                f"read namespace {self.namespace}",
                self._api("CoreV1Api").read_namespace,
                self.namespace,
                namespaced=False,
            )
        except KubernetesApiError as exc:
            if exc.status == 404:
                return None
            raise

    def can_i(self, verb: str, group: str, resource: str) -> tuple[bool, str]:
        """SelfSubjectAccessReview: may this client ``verb`` ``resource`` in the namespace?"""
        attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
        if resource == "namespaces":
            attributes["name"] = self.namespace
        else:
            attributes["namespace"] = self.namespace
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        review = self._call(
            "check permissions (SelfSubjectAccessReview)",
            self._api("AuthorizationV1Api").create_self_subject_access_review,
            body,
        )
        status = review.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return self._rest(f"read {kind} {name}", "GET", self._path(kind, name))
        except KubernetesApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, label_selector: str) -> list[dict[str, Any]]:
        result = self._rest(
            f"list {PLURALS[kind]} ({label_selector})",
            "GET",
            self._path(kind),
            query=[("labelSelector", label_selector)],
        )
        items = result.get("items") or []
        for item in items:  # list items carry no apiVersion/kind; restore them for the caller
            item.setdefault("apiVersion", self.version_of(kind))
            item.setdefault("kind", kind)
        return list(items)

    def apply(self, manifest: dict[str, Any], *, field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply: create or update to exactly ``manifest``; idempotent."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        return self._rest(
            f"apply {kind} {name}",
            "PATCH",
            self._path(kind, name),
            query=[("fieldManager", field_manager), ("force", "true")],
            body=manifest,
            content_type="application/apply-patch+yaml",
        )

    def dry_run(self, manifest: dict[str, Any]) -> None:
        """Let the server validate ``manifest`` without storing it (Jobs as a create: their
        template is immutable; everything else as the apply the plugin will make)."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        try:
            if kind in ("Job", "ConfigMap"):
                self._rest(
                    f"check {kind} {name} (dry run)",
                    "POST",
                    self._path(kind),
                    query=[("fieldManager", FIELD_MANAGER), ("dryRun", "All"), ("fieldValidation", "Strict")],
                    body=manifest,
                )
            else:
                self._rest(
                    f"check {kind} {name} (dry run)",
                    "PATCH",
                    self._path(kind, name),
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true"), ("dryRun", "All")],
                    body=manifest,
                    content_type="application/apply-patch+yaml",
                )
        except KubernetesApiError as exc:
            if exc.status != 409:  # it exists already: what matters here is that it is valid
                raise

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind = manifest["kind"]
        return self._rest(
            f"create {kind} {manifest['metadata']['name']}",
            "POST",
            self._path(kind),
            query=[("fieldManager", FIELD_MANAGER)],
            body=manifest,
        )

    def delete(self, kind: str, name: str) -> bool:
        """Delete (background propagation: owned objects follow); ``False`` if it was already gone."""
        try:
            self._rest(
                f"delete {kind} {name}",
                "DELETE",
                self._path(kind, name),
                query=[("propagationPolicy", "Background")],
            )
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


_STATUS_ADVICE = {
    400: "the request was malformed",
    401: "the credentials were rejected: check the service account token or the kubeconfig user",
    403: (
        "permission denied: the agent's Role must allow this "
        "(the Shipmate chart's RBAC grants what the plugin uses)"
    ),
    404: "not found",
    409: "conflict with the object's current state; retrying usually resolves it",
    410: "the object's version expired; retry",
    422: "the API server rejected the object as invalid",
    429: "the API server is throttling requests; retry later",
}


@contextmanager
def translate_errors(what: str, cluster: Cluster | None = None, *, namespaced: bool = True) -> Iterator[None]:
    """Turn ``ApiException`` and connection errors into ``KubernetesApiError``."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    namespace = f" in namespace {cluster.namespace}" if cluster and namespaced else ""
    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        server_message = _server_message(exc.body) or (exc.reason or "")
        if status == 0:
            raise KubernetesApiError(
                f"cannot {what}{namespace}: {server_message or 'no response'}", status=None, retryable=True
            ) from None
        advice = _STATUS_ADVICE.get(
            status, "the API server failed" if status >= 500 else "unexpected response"
        )
        if status == 404 and "namespaces" in server_message and cluster is not None:
            advice = f"namespace {cluster.namespace} does not exist: create it or set kubeNamespace"
        invalid = status == 500 and "failed to create typed patch object" in server_message
        if invalid:  # before 1.2x, server-side apply answers an unknown field with a 500
            status, advice = 422, _STATUS_ADVICE[422]
        retryable = status in (409, 410, 429) or status >= 500
        raise KubernetesApiError(
            f"cannot {what}{namespace}: {status} {advice} ({server_message})".replace(" ()", ""),
            status=status,
            retryable=retryable,
        ) from None
    except (ValueError, TypeError) as exc:  # the client library's own checks
        raise KubernetesApiError(
            f"cannot {what}{namespace}: the Kubernetes client refused it: {exc}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        host = cluster.host if cluster else "the API server"
        reason = getattr(exc, "reason", None) or exc
        raise KubernetesApiError(
            f"cannot {what}: the Kubernetes API at {host} is unreachable ({reason})", retryable=True
        ) from None


def _server_message(body: object) -> str:
    """The ``message`` of a ``Status`` body, the body text otherwise."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return text.strip()[:300]


@dataclass(frozen=True, slots=True)
class Permission:
    verb: str
    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}"


def _permissions(group: str, resource: str, *verbs: str) -> list[Permission]:
    return [Permission(verb, group, resource) for verb in verbs]


REQUIRED_PERMISSIONS: tuple[Permission, ...] = tuple(
    _permissions("apps", "deployments", "get", "list", "create", "patch", "delete")
    + _permissions("", "services", "list", "create", "patch", "delete")
    + _permissions("networking.k8s.io", "ingresses", "list", "create", "patch", "delete")
    + _permissions("autoscaling", "horizontalpodautoscalers", "get", "list", "create", "patch", "delete")
    + _permissions("policy", "poddisruptionbudgets", "list", "create", "patch", "delete")
    + _permissions("batch", "jobs", "get", "create", "delete")
    + _permissions("", "configmaps", "create", "delete")
    + _permissions("", "pods", "list")
)
"""Every namespaced permission the plugin's calls need (server-side apply needs create and patch).

``pe_status`` checks each with a SelfSubjectAccessReview; the chart's Role grants exactly these."""

OPTIONAL_PERMISSIONS: tuple[Permission, ...] = (Permission("get", "", "namespaces"),)
"""Used only by ``pe_status`` to tell a missing namespace from an empty one."""
