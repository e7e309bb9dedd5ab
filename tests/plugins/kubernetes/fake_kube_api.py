"""An in-memory, HTTP-level fake of exactly the Kubernetes API calls the plugin makes.

The plugin talks to it through the official client (a real ``ApiClient`` built
from a kubeconfig), so its serialisation, query parameters, content types and
``ApiException`` handling all run. What the fake does, like the API server:

* stores objects per (resource, namespace, name) with ``uid``,
  ``resourceVersion``, ``generation`` (bumped when a spec changes) and
  ``creationTimestamp``; answers 404 / 409 / 415 / 422 with ``Status`` bodies;
* validates every object written against the official OpenAPI schema
  (``kubernetes-validate``, strict) and rejects invalid ones with 422;
* server-side apply (``PATCH`` with ``application/apply-patch+yaml``) creates
  or updates; ``DELETE`` cascades to objects whose owner references point at
  the deleted uid, as the garbage collector does with background propagation;
* label selectors (``k=v,…``) on lists; bearer-token auth (401); RBAC denials
  (403 on the call, ``allowed: false`` in SelfSubjectAccessReviews);
* stands in for the controllers: a Deployment's rollout becomes available or
  fails as the test decides per image (``image_outcomes``), with realistic pod
  statuses (ImagePullBackOff, CrashLoopBackOff, OOMKilled, Unschedulable) while
  the old pods keep serving; a Kaniko Job succeeds or fails as
  ``build_outcome`` decides.

It does not do everything an API server does (no watch, no field ownership
beyond one manager, no admission webhooks, no scheduling): see docs/kubernetes.md.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

VALIDATE_VERSION = "1.37.0"

# plural -> (apiVersion, kind, path prefix)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "deployments": ("apps/v1", "Deployment", "/apis/apps/v1"),
    "services": ("v1", "Service", "/api/v1"),
    "ingresses": ("networking.k8s.io/v1", "Ingress", "/apis/networking.k8s.io/v1"),
    "horizontalpodautoscalers": ("autoscaling/v1", "HorizontalPodAutoscaler", "/apis/autoscaling/v1"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", "/apis/policy/v1"),
    "jobs": ("batch/v1", "Job", "/apis/batch/v1"),
    "configmaps": ("v1", "ConfigMap", "/api/v1"),
    "pods": ("v1", "Pod", "/api/v1"),
}
GROUPS = {plural: (api.rpartition("/")[0]) for plural, (api, _, _) in RESOURCES.items()}
NEWEST_SERVED = frozenset(
    {api for api, _, _ in RESOURCES.values()} | {"autoscaling/v2", "authorization.k8s.io/v1"}
)
"""What a current API server serves of what the plugin uses (discovery: /api and /apis)."""
SERVED_BY_1_20 = frozenset(
    {"v1", "apps/v1", "networking.k8s.io/v1", "batch/v1", "authorization.k8s.io/v1"}
    | {"autoscaling/v1", "autoscaling/v2beta1", "autoscaling/v2beta2", "policy/v1beta1"}
)
# Old API versions, validated with the oldest schemas kubernetes-validate ships that have them
# (policy/v1beta1 is gone from those: its PodDisruptionBudget has policy/v1's shape).
SCHEMA_FOR = {
    "autoscaling/v2beta2": ("autoscaling/v2beta2", "1.25.0"),
    "policy/v1beta1": ("policy/v1", "1.25.0"),
}
WRITABLE = set(RESOURCES) - {"pods"}

_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)

READY = "ready"
POD_FAILURES = ("ImagePullBackOff", "CrashLoopBackOff", "OOMKilled", "Unschedulable", "NotReady")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any


@dataclass
class FakeKubeState:
    """Everything a test can read or steer."""

    namespaces: set[str] = field(default_factory=lambda: {"default"})
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    token: str = "fake-token"
    version: dict[str, str] = field(
        default_factory=lambda: {
            "major": "1",
            "minor": "30",
            "gitVersion": "v1.30.2",
            "platform": "linux/amd64",
        }
    )
    served: frozenset[str] = NEWEST_SERVED
    """The group versions discovery lists; HPAs and PDBs are served in any of these."""
    replica_owners: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    """Field managers owning a Deployment's spec.replicas (server-side apply's bookkeeping)."""
    denied: set[tuple[str, str, str]] = field(default_factory=set)
    """(verb, group, resource) this user may not do."""
    image_outcomes: dict[str, str] = field(default_factory=dict)
    """image -> "ready" (default), one of POD_FAILURES, or "slow:<n>" (ready after n reads)."""
    progress_deadline_exceeded: bool = False
    build_outcome: str = "succeed"
    """"succeed", "fail", "slow:<n>" (succeeds after n reads) or "never"."""
    build_failure_message: str = "error pushing image: UNAUTHORIZED: authentication required"
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    failures: list[tuple[str, re.Pattern[str], int, str]] = field(default_factory=list)
    ticks: dict[tuple[str, str, str], int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    # -- helpers for tests ------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int, message: str) -> None:
        """Answer the next matching request with ``status`` and ``message``."""
        self.failures.append((method, re.compile(path_regex), status, message))

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def items(self, plural: str, namespace: str = "default") -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and ns == namespace
            ]

    def names(self, plural: str, namespace: str = "default") -> list[str]:
        return [o["metadata"]["name"] for o in self.items(plural, namespace)]

    def calls(self, method: str, plural: str | None = None, *, dry_run: bool = False) -> list[Request]:
        """The requests made (server-side dry runs only when ``dry_run``)."""
        return [
            r
            for r in self.requests
            if r.method == method
            and (plural is None or f"/{plural}" in r.path)
            and bool(r.query.get("dryRun")) == dry_run
        ]

    def next_rv(self) -> str:
        return str(next(self._rv))


class FakeKubeApi:
    """The HTTP server; ``state`` is what tests steer and inspect."""

    def __init__(self) -> None:
        self.state = FakeKubeState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one small response must not wait for a delayed ACK

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                body = json.loads(raw) if raw else None
                request = Request(
                    self.command, parts.path, parse_qs(parts.query), self.headers.get("Content-Type"), body
                )
                with state.lock:
                    state.requests.append(request)
                    status, payload = _dispatch(state, request, self.headers.get("Authorization"))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# -- request handling ------------------------------------------------------------------------


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return code, body


def _qualified(plural: str) -> str:
    group = GROUPS[plural]
    return f"{plural}.{group}" if group else plural


def _forbidden(verb: str, plural: str, name: str | None, namespace: str) -> tuple[int, dict[str, Any]]:
    group = GROUPS.get(plural, "")
    target = f'{_qualified(plural)} "{name}"' if name else _qualified(plural)
    return _status(
        403,
        "Forbidden",
        f'{target} is forbidden: User "system:serviceaccount:{namespace}:shipmate-agent" '
        f'cannot {verb} resource "{plural}" in API group "{group}" in the namespace "{namespace}"',
    )


def _dispatch(state: FakeKubeState, req: Request, authorization: str | None) -> tuple[int, Any]:
    if authorization != f"Bearer {state.token}":
        return _status(401, "Unauthorized", "Unauthorized")
    for index, (method, pattern, code, message) in enumerate(state.failures):
        if method == req.method and pattern.search(req.path) and not req.query.get("dryRun"):
            del state.failures[index]
            return _status(code, "InternalError" if code >= 500 else "Invalid", message)
    if req.method == "GET" and req.path in ("/version", "/version/"):
        return 200, state.version
    if req.method == "GET" and req.path == "/api":
        return 200, {"kind": "APIVersions", "versions": ["v1"] if "v1" in state.served else []}
    if req.method == "GET" and req.path == "/apis":
        groups: dict[str, list[str]] = {}
        for version in sorted(state.served, reverse=True):
            if "/" in version:
                groups.setdefault(version.partition("/")[0], []).append(version)
        return 200, {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": name,
                    "versions": [{"groupVersion": v, "version": v.partition("/")[2]} for v in versions],
                    "preferredVersion": {
                        "groupVersion": versions[0],
                        "version": versions[0].partition("/")[2],
                    },
                }
                for name, versions in sorted(groups.items())
            ],
        }
    if req.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" and req.method == "POST":
        attributes = req.body["spec"]["resourceAttributes"]
        key = (attributes["verb"], attributes.get("group", ""), attributes["resource"])
        allowed = key not in state.denied
        review = copy.deepcopy(req.body)
        review["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule allows it"})}
        return 201, review
    match = re.fullmatch(r"/api/v1/namespaces/([^/]+)", req.path)
    if match and req.method == "GET":
        name = match.group(1)
        if ("get", "", "namespaces") in state.denied:
            return _status(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: cannot get resource "namespaces" at the cluster scope',
            )
        if name not in state.namespaces:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        return 200, {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": state.namespace_labels.get(name, {})},
            "status": {"phase": "Active"},
        }
    match = _PATH.match(req.path)
    served_prefix = match is not None and (
        (match.group("prefix").removeprefix("/apis/").removeprefix("/api/") in state.served)
        and match.group("plural") in RESOURCES
        and (
            RESOURCES[match.group("plural")][2] == match.group("prefix")
            or (
                match.group("plural") in ("horizontalpodautoscalers", "poddisruptionbudgets")
                and match.group("prefix").startswith(RESOURCES[match.group("plural")][2].rpartition("/")[0])
            )
        )
    )
    if not match or not served_prefix:
        state.unexpected.append(f"{req.method} {req.path}")
        return _status(404, "NotFound", "the server could not find the requested resource")
    plural, namespace, name = match.group("plural"), match.group("ns"), match.group("name")
    verb = {
        ("GET", False): "list",
        ("GET", True): "get",
        ("POST", False): "create",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
    }.get((req.method, name is not None))
    if verb is None or (verb != "list" and verb != "get" and plural not in WRITABLE):
        state.unexpected.append(f"{req.method} {req.path}")
        return _status(405, "MethodNotAllowed", f"the server does not allow this method on {plural}")
    if (verb, GROUPS[plural], plural) in state.denied:
        return _forbidden(verb, plural, name, namespace)
    if namespace not in state.namespaces and verb in ("create", "patch"):
        return _status(404, "NotFound", f'namespaces "{namespace}" not found')
    if verb == "list":
        return 200, _list(state, plural, namespace, req.query.get("labelSelector", [""])[0])
    assert name is not None or verb == "create"
    if verb == "get":
        return _get(state, plural, namespace, name or "")
    if verb == "create":
        return _create(state, plural, namespace, req)
    if verb == "patch":
        return _apply(state, plural, namespace, name or "", req)
    return _delete(state, plural, namespace, name or "", req)


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _list(state: FakeKubeState, plural: str, namespace: str, selector: str) -> dict[str, Any]:
    api_version, kind, _ = RESOURCES[plural]
    items = []
    for (p, ns, _), obj in sorted(state.objects.items()):
        if p == plural and ns == namespace and _matches(obj, selector):
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)  # as in a real list, items carry no apiVersion/kind
            item.pop("kind", None)
            items.append(item)
    return {
        "apiVersion": api_version,
        "kind": f"{kind}List",
        "metadata": {"resourceVersion": state.next_rv()},
        "items": items,
    }


def _get(state: FakeKubeState, plural: str, namespace: str, name: str) -> tuple[int, Any]:
    key = (plural, namespace, name)
    if key not in state.objects:
        return _status(
            404, "NotFound", f'{_qualified(plural)} "{name}" not found', {"name": name, "kind": plural}
        )
    if key in state.ticks:  # a slow controller: progress one step per read
        state.ticks[key] -= 1
        if state.ticks[key] <= 0:
            del state.ticks[key]
            if plural == "deployments":
                _complete_rollout(state, state.objects[key])
            elif plural == "jobs":
                _finish_job(state, state.objects[key], succeeded=True)
    return 200, copy.deepcopy(state.objects[key])


def _invalid(
    plural: str, name: str, obj: dict[str, Any], *, apply: bool = False
) -> tuple[int, dict[str, Any]] | None:
    """422 for an invalid object; for server-side apply an unknown field is a 500, as a real
    server answers (it cannot build the typed patch before it validates anything)."""
    api_version, schemas = SCHEMA_FOR.get(
        obj.get("apiVersion", ""), (obj.get("apiVersion"), VALIDATE_VERSION)
    )
    try:
        kubernetes_validate.validate({**obj, "apiVersion": api_version}, schemas, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        if apply and exc.validator == "additionalProperties":
            return _status(
                500,
                "InternalError",
                f"failed to create typed patch object: {where}: field not declared in schema ({exc.message})",
            )
        return _status(422, "Invalid", f'{RESOURCES[plural][1]} "{name}" is invalid: {where}: {exc.message}')
    return None


def _stamp(state: FakeKubeState, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    metadata = obj.setdefault("metadata", {})
    metadata.update(
        namespace=namespace,
        uid=str(uuid.uuid4()),
        resourceVersion=state.next_rv(),
        creationTimestamp="2026-01-01T00:00:00Z",
    )
    if plural in ("deployments", "jobs"):
        metadata["generation"] = 1
    if plural == "deployments":
        obj["spec"].setdefault("replicas", 1)
    if plural == "services":
        obj["spec"].setdefault("clusterIP", "10.96.0.42")
    return obj


def _create(state: FakeKubeState, plural: str, namespace: str, req: Request) -> tuple[int, Any]:
    obj = req.body
    name = obj["metadata"]["name"]
    if (problem := _invalid(plural, name, obj)) is not None:
        return problem
    if (plural, namespace, name) in state.objects:
        return _status(409, "AlreadyExists", f'{_qualified(plural)} "{name}" already exists', {"name": name})
    if req.query.get("dryRun"):
        return 201, copy.deepcopy(obj)
    stored = _stamp(state, plural, namespace, obj)
    state.objects[(plural, namespace, name)] = stored
    if plural == "jobs":
        _start_job(state, stored)
    return 201, copy.deepcopy(stored)


def _apply(state: FakeKubeState, plural: str, namespace: str, name: str, req: Request) -> tuple[int, Any]:
    if req.content_type != "application/apply-patch+yaml":
        return _status(
            415, "UnsupportedMediaType", f"the fake only serves server-side apply, not {req.content_type}"
        )
    if not req.query.get("fieldManager"):
        return _status(422, "Invalid", "PATCH: fieldManager is required for apply requests")
    desired = req.body
    if desired["metadata"].get("name") != name:
        return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
    key = (plural, namespace, name)
    existing = state.objects.get(key)
    if plural == "deployments" and existing is not None and set(desired.get("spec") or {}) == {"replicas"}:
        desired = copy.deepcopy(existing)  # a partial apply: only spec.replicas
        desired["spec"]["replicas"] = req.body["spec"]["replicas"]
        desired.pop("status", None)
        for generated in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            desired["metadata"].pop(generated, None)
    if (problem := _invalid(plural, name, desired, apply=True)) is not None:
        return problem
    if req.query.get("dryRun"):
        return 200, copy.deepcopy(desired)
    if plural == "deployments":
        manager = req.query["fieldManager"][0]
        owners = state.replica_owners.setdefault(key, set())
        wanted = (req.body.get("spec") or {}).get("replicas")
        if wanted is None:
            owners.discard(manager)
        elif existing is None or wanted != existing["spec"].get("replicas"):
            owners.clear()
            owners.add(manager)
        else:
            owners.add(manager)
    if existing is None:
        stored = _stamp(state, plural, namespace, desired)
        if plural == "deployments":
            stored["metadata"]["managedFields"] = [
                {"manager": m, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                for m in sorted(state.replica_owners.get(key, ()))
            ]
        state.objects[key] = stored
        if plural == "deployments":
            _rollout(state, stored, previous_template=None)
        return 201, copy.deepcopy(stored)
    updated = copy.deepcopy(desired)
    metadata = updated["metadata"]
    for kept in ("namespace", "uid", "creationTimestamp", "generation"):
        if kept in existing["metadata"]:
            metadata[kept] = existing["metadata"][kept]
    if "ownerReferences" not in metadata and existing["metadata"].get("ownerReferences"):
        metadata["ownerReferences"] = existing["metadata"]["ownerReferences"]
    if "status" in existing:
        updated["status"] = existing["status"]
    if plural == "deployments" and "replicas" not in updated["spec"]:
        # A field no manager owns any more is removed, and the server defaults replicas to 1.
        owned = state.replica_owners.get(key)
        updated["spec"]["replicas"] = existing["spec"].get("replicas", 1) if owned else 1
    if plural == "deployments":
        metadata["managedFields"] = [
            {"manager": m, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            for m in sorted(state.replica_owners.get(key, ()))
        ]
    if plural == "services":
        updated["spec"]["clusterIP"] = existing["spec"].get("clusterIP")
    changed = updated.get("spec") != existing.get("spec")
    if changed and "generation" in metadata:
        metadata["generation"] += 1
    if changed or updated["metadata"] != existing["metadata"]:
        metadata["resourceVersion"] = state.next_rv()
    else:
        metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
    state.objects[key] = updated
    if plural == "deployments" and changed:
        _rollout(state, updated, previous_template=existing["spec"]["template"])
    return 200, copy.deepcopy(updated)


def _delete(state: FakeKubeState, plural: str, namespace: str, name: str, req: Request) -> tuple[int, Any]:
    key = (plural, namespace, name)
    obj = state.objects.pop(key, None)
    if obj is None:
        return _status(404, "NotFound", f'{_qualified(plural)} "{name}" not found', {"name": name})
    state.ticks.pop(key, None)
    policy = (req.query.get("propagationPolicy") or ["Background"])[0]
    if policy != "Orphan":
        _collect_garbage(state, obj["metadata"]["uid"])
    return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}


def _collect_garbage(state: FakeKubeState, owner_uid: str) -> None:
    for key, obj in list(state.objects.items()):
        owners = obj["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == owner_uid for o in owners) and key in state.objects:
            del state.objects[key]
            _collect_garbage(state, obj["metadata"]["uid"])


# -- stand-ins for the controllers -----------------------------------------------------------


def _pod(
    state: FakeKubeState, owner: dict[str, Any], template: dict[str, Any], suffix: str
) -> dict[str, Any]:
    name = f"{owner['metadata']['name']}-{suffix}"
    containers = template["spec"]["containers"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "uid": str(uuid.uuid4()),
            "resourceVersion": state.next_rv(),
            "labels": dict(template["metadata"].get("labels") or {}),
            # really owned by a ReplicaSet; the fake skips that level
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
        "status": {"phase": "Running", "conditions": [], "containerStatuses": []},
    }
    pod["status"]["containerStatuses"] = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "lastState": {},
        }
        for c in containers
    ]
    state.objects[("pods", owner["metadata"]["namespace"], name)] = pod
    return pod


def _break(pod: dict[str, Any], outcome: str) -> None:
    status = pod["status"]
    cs = status["containerStatuses"][0]
    cs["ready"] = False
    if outcome == "ImagePullBackOff":
        status["phase"] = "Pending"
        cs["started"] = False
        cs["state"] = {
            "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{cs["image"]}"'}
        }
    elif outcome == "CrashLoopBackOff":
        cs["restartCount"] = 4
        cs["state"] = {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}
        }
        cs["lastState"] = {
            "terminated": {"exitCode": 1, "reason": "Error", "message": "ModelLoadError: bad package"}
        }
    elif outcome == "OOMKilled":
        cs["restartCount"] = 3
        cs["state"] = {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container"}
        }
        cs["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    elif outcome == "Unschedulable":
        status["phase"] = "Pending"
        status["containerStatuses"] = []
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
            }
        ]
    elif outcome == "NotReady":
        pass
    else:  # slow: still starting
        status["phase"] = "Pending"
        cs["state"] = {"waiting": {"reason": "ContainerCreating"}}


def _template_key(template: dict[str, Any]) -> str:
    return json.dumps(template, sort_keys=True)


def _rollout(
    state: FakeKubeState, deployment: dict[str, Any], previous_template: dict[str, Any] | None
) -> None:
    namespace = deployment["metadata"]["namespace"]
    template = deployment["spec"]["template"]
    replicas = int(deployment["spec"].get("replicas", 1))
    image = template["spec"]["containers"][0]["image"]
    outcome = state.image_outcomes.get(image, READY)
    owned = [
        (k, o)
        for k, o in state.objects.items()
        if k[0] == "pods"
        and k[1] == namespace
        and any(
            r.get("uid") == deployment["metadata"]["uid"] for r in o["metadata"].get("ownerReferences") or []
        )
    ]
    serving = [
        (k, o)
        for k, o in owned
        if all(cs.get("ready") for cs in o["status"]["containerStatuses"])
        and o["status"]["containerStatuses"]
    ]
    for k, o in owned:  # pods of any template that is not serving are replaced
        if (k, o) not in serving or previous_template is None:
            del state.objects[k]
    serving = [(k, o) for k, o in serving if k in state.objects]
    revision = deployment["metadata"]["generation"]
    if outcome == READY:
        _complete_rollout(state, deployment)
        return
    new_pod = _pod(state, deployment, template, f"r{revision}-0")
    _break(new_pod, outcome)
    old = len(serving)
    conditions = [
        {
            "type": "Available",
            "status": "True" if old >= replicas else "False",
            "reason": "MinimumReplicasAvailable",
        },
        {
            "type": "Progressing",
            "status": "True",
            "reason": "ReplicaSetUpdated",
            "message": "rollout in progress",
        },
    ]
    if state.progress_deadline_exceeded:
        conditions[1] = {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{deployment["metadata"]["name"]}" has timed out progressing.',
        }
    deployment["status"] = {
        "observedGeneration": revision,
        "replicas": old + 1,
        "updatedReplicas": 1,
        "readyReplicas": old,
        "availableReplicas": old,
        "unavailableReplicas": 1,
        "conditions": conditions,
    }
    if outcome.startswith("slow:"):
        state.ticks[("deployments", namespace, deployment["metadata"]["name"])] = int(outcome.split(":")[1])


def _complete_rollout(state: FakeKubeState, deployment: dict[str, Any]) -> None:
    namespace = deployment["metadata"]["namespace"]
    for k, o in list(state.objects.items()):
        if (
            k[0] == "pods"
            and k[1] == namespace
            and any(
                r.get("uid") == deployment["metadata"]["uid"]
                for r in o["metadata"].get("ownerReferences") or []
            )
        ):
            del state.objects[k]
    replicas = int(deployment["spec"].get("replicas", 1))
    revision = deployment["metadata"]["generation"]
    for index in range(replicas):
        _pod(state, deployment, deployment["spec"]["template"], f"r{revision}-{index}")
    deployment["status"] = {
        "observedGeneration": revision,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }


def _start_job(state: FakeKubeState, job: dict[str, Any]) -> None:
    pod = _pod(state, job, job["spec"]["template"], "build")
    job["status"] = {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
    outcome = state.build_outcome
    if outcome == "succeed":
        _finish_job(state, job, succeeded=True)
    elif outcome == "fail":
        cs = pod["status"]["containerStatuses"][0]
        cs.update(ready=False, started=False)
        cs["state"] = {
            "terminated": {"exitCode": 1, "reason": "Error", "message": state.build_failure_message}
        }
        pod["status"]["phase"] = "Failed"
        _finish_job(state, job, succeeded=False)
    elif outcome.startswith("slow:"):
        state.ticks[("jobs", job["metadata"]["namespace"], job["metadata"]["name"])] = int(
            outcome.split(":")[1]
        )


def _finish_job(state: FakeKubeState, job: dict[str, Any], *, succeeded: bool) -> None:
    if succeeded:
        job["status"] = {
            "succeeded": 1,
            "completionTime": "2026-01-01T00:01:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    else:
        job["status"] = {
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
