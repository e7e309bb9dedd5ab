"""A real Kubernetes API server (v1.20.2) with etcd on 127.0.0.1, for the tests.

The binaries come from scripts/kube-apiserver.sh (built once from the package archives and
cached outside the repository); ``BackgroundBuild`` starts it when the session's tests are
collected, so a cold build overlaps the rest of the suite. ``KubeServer`` starts etcd and
kube-apiserver with a CA and serving certificate made by openssl, a static token file (an
admin in ``system:masters`` and a user with no rights), RBAC, a service-account key pair,
no insecure port, no endpoint reconciler and no ServiceAccount admission. There is no
kubelet and no controller manager: ``Kubelet`` plays their part by writing the status
subresources (a Job completes, a Deployment becomes available), as envtest users do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "kube-apiserver.sh"
ADMIN_TOKEN = "shipmate-admin-token"
NOBODY_TOKEN = "shipmate-nobody-token"


class BackgroundBuild:
    """The build script, started early in its own process group, waited for when needed."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"shipmate-kube-build-{os.getpid()}.log"
        self.started_at = 0.0

    def start(self) -> None:
        if self.process is not None or shutil.which("apt-get") is None:
            return
        self.started_at = time.monotonic()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["bash", str(SCRIPT)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait(self) -> Path:
        """The bin directory; ``RuntimeError`` with the log's tail if the build cannot run here."""
        if shutil.which("apt-get") is None:
            cached = Path(os.environ.get("SHIPMATE_KUBE_CACHE", Path.home() / ".cache/shipmate/kube")) / "bin"
            if all((cached / name).exists() for name in ("kube-apiserver", "etcd", "helm", "helm3")):
                return cached
            raise RuntimeError("no apt-get: the API server is built from Debian's package archives")
        self.start()
        assert self.process is not None
        code = self.process.wait()
        text = self.log.read_text(errors="replace").strip().splitlines()
        if code != 0:
            raise RuntimeError(f"scripts/kube-apiserver.sh failed ({code}): " + " | ".join(text[-5:]))
        return Path(text[-1])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and a service-account key pair."""
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shipmate-test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
             "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt"))  # fmt: skip
    _openssl("genrsa", "-out", str(d / "sa.key"), "2048")
    _openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))


@dataclass
class KubeServer:
    """etcd + kube-apiserver on loopback ports of their own; ``request`` talks to it as admin."""

    bin_dir: Path
    directory: Path
    url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    version: dict[str, Any] = field(default_factory=dict)

    def start(self) -> KubeServer:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        make_certificates(d)
        (d / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},shipmate-admin,1,"system:masters"\n{NOBODY_TOKEN},shipmate-nobody,2\n'
        )
        client, peer, secure = _free_port(), _free_port(), _free_port()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"), "--name=test", f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=test=http://127.0.0.1:{peer}", "--log-level=error",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure}",
                "--insecure-port=0", f"--cert-dir={d}", f"--tls-cert-file={d / 'server.crt'}",
                f"--tls-private-key-file={d / 'server.key'}", f"--client-ca-file={d / 'ca.crt'}",
                f"--token-auth-file={d / 'tokens.csv'}", "--authorization-mode=RBAC",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
                "--disable-admission-plugins=ServiceAccount", "--enable-priority-and-fairness=false", "--v=0",
            ],
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{secure}"
        deadline = time.monotonic() + 120
        while True:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited: {self._log_tail(process)}")
            try:
                if self.request("GET", "/readyz", raw=True) == "ok":
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("kube-apiserver not ready after 120 s")
            time.sleep(0.25)
        self.version = self.request("GET", "/version")
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        )
        log.close()

    def _log_tail(self, process: subprocess.Popen[bytes]) -> str:
        name = Path(str(process.args[0])).name
        lines = (self.directory / f"{name}.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-5:])

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    # -- talking to it ---------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str = ADMIN_TOKEN,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=context, timeout=30) as response:
            text = response.read().decode()
        return text if raw else json.loads(text)

    def kubeconfig(self, path: Path, token: str, namespace: str) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "real",
                            "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                        }
                    ],
                    "users": [{"name": "user", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "real",
                            "context": {"cluster": "real", "user": "user", "namespace": namespace},
                        }
                    ],
                    "current-context": "real",
                }
            )
        )
        return path

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}},
        )

    def service_account_token(self, namespace: str, name: str) -> str:
        """Create the service account (if needed) and a token for it (TokenRequest API)."""
        try:
            self.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            )
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
        review = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        return str(review["status"]["token"])


class Kubelet:
    """Plays the kubelet and the controllers: marks build Jobs complete and Deployments available.

    ``failing_images``: Deployments whose template runs one of these images get
    ``ProgressDeadlineExceeded`` instead (a model whose pods never become ready).
    """

    def __init__(self, server: KubeServer, namespace: str, interval: float = 0.1) -> None:
        self.server = server
        self.namespace = namespace
        self.interval = interval
        self.failing_images: set[str] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception as exc:  # reported by the test through .errors
                self.errors.append(repr(exc))

    def step(self) -> None:
        ns = self.namespace
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for job in self.server.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]:
            if not (job.get("status") or {}).get("succeeded"):
                status = {
                    "startTime": now,
                    "completionTime": now,
                    "succeeded": 1,
                    "conditions": [
                        {
                            "type": "Complete",
                            "status": "True",
                            "lastProbeTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
                self._patch_status("batch/v1", "jobs", job, status)
        for deployment in self.server.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")["items"]:
            spec, status = deployment["spec"], deployment.get("status") or {}
            generation = deployment["metadata"]["generation"]
            replicas = int(spec.get("replicas", 1))
            image = spec["template"]["spec"]["containers"][0]["image"]
            if image in self.failing_images:
                new = {
                    "observedGeneration": generation,
                    "replicas": status.get("replicas", 0),
                    "updatedReplicas": 0,
                    "readyReplicas": status.get("readyReplicas", 0),
                    "availableReplicas": status.get("availableReplicas", 0),
                    "conditions": [
                        {
                            "type": "Progressing",
                            "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": f"ReplicaSet for {image} has timed out progressing.",
                            "lastUpdateTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
            else:
                new = {
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "reason": "MinimumReplicasAvailable",
                            "lastUpdateTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                }
            if {k: status.get(k) for k in new if k != "conditions"} != {
                k: v for k, v in new.items() if k != "conditions"
            }:
                self._patch_status("apps/v1", "deployments", deployment, new)

    def _patch_status(
        self, api_version: str, plural: str, obj: dict[str, Any], status: dict[str, Any]
    ) -> None:
        name = obj["metadata"]["name"]
        try:
            self.server.request(
                "PATCH",
                f"/apis/{api_version}/namespaces/{self.namespace}/{plural}/{name}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 409):  # deleted or changed meanwhile: the next step sees it
                raise
