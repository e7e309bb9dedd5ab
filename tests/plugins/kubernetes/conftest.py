"""Fixtures for the Kubernetes plugin and chart tests: the fake API server and small factories."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipmate.plugin.info import DeploymentInfo

HERE = Path(__file__).parent


def _load_fake() -> Any:
    spec = importlib.util.spec_from_file_location("shipmate_tests_fake_kube_api", HERE / "fake_kube_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake_kube_api = _load_fake()


@pytest.fixture
def fake_api() -> Iterator[Any]:
    api = fake_kube_api.FakeKubeApi().start()
    try:
        yield api
    finally:
        api.stop()
    assert api.state.unexpected == [], (
        f"the plugin made calls the fake does not serve: {api.state.unexpected}"
    )


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_api: Any) -> Path:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake_api.url}}],
                "users": [{"name": "agent", "user": {"token": fake_api.state.token}}],
                "contexts": [
                    {"name": "fake", "context": {"cluster": "fake", "user": "agent", "namespace": "default"}}
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
def private_config(kubeconfig: Path) -> dict[str, Any]:
    """A ``plugin.k8s.conf.yaml`` pointing at the fake, with short timings."""
    return {
        "kubeConfigFile": str(kubeconfig),
        "kubeConfigContext": "fake",
        "outfacingPredictionURLPrefix": "https://models.example.com/deployments",
        "ingressClass": "mlops",
        "ppsBaseImage": "registry.example.com/shipmate/prediction-server:0.1.0",
        "generatedImageRepo": "registry.example.com/mlops/frozen-models",
        "kanikoImage": "registry.example.com/kaniko-project/executor:v1.23.2",
        "kanikoSecretName": "registry-creds",
        "kanikoServiceAccount": "shipmate-image-builder",
        "pollIntervalSeconds": 0.01,
        "rolloutTimeoutSeconds": 3,
        "buildTimeoutSeconds": 3,
    }


@pytest.fixture
def make_plugin(tmp_path: Path, private_config: dict[str, Any]) -> Callable[..., Any]:
    from shipmate.plugins.kubernetes.plugin import KubernetesPlugin

    counter = iter(range(1000))

    def factory(*, pe_info: dict[str, Any] | None = None, env_id: str = "env-1", **overrides: Any) -> Any:
        settings = {**private_config, **overrides}
        path = tmp_path / f"plugin.k8s.conf.{next(counter)}.yaml"
        path.write_text(yaml.safe_dump({k: v for k, v in settings.items() if v is not None}))
        plugin_config = {"MLOPS_BOSUN_PRED_ENV_ID": env_id, "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING": False}
        return KubernetesPlugin(plugin_config, str(path), pe_info, False)

    return factory


@pytest.fixture
def make_info(tmp_path: Path) -> Callable[..., DeploymentInfo]:
    def factory(
        deployment_id: str = "dep-1", model_id: str = "model-a", *, size: int = 20_000, **fields: Any
    ) -> DeploymentInfo:
        artifact = tmp_path / f"model_{hashlib.sha256(model_id.encode()).hexdigest()[:12]}.mlpkg"
        if not artifact.exists():
            artifact.write_bytes(os.urandom(size))
        raw = {
            "id": deployment_id,
            "modelId": model_id,
            "modelExecutionType": "dedicated",
            "name": f"deployment {deployment_id}",
            "modelArtifact": str(artifact),
            **fields,
        }
        return DeploymentInfo.from_dict(raw)

    return factory


# -- the real API server (tests marked ``kube_server``; see kube_server.py) ----------------------


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"shipmate_tests_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


kube_server_module = _load("kube_server")
_BUILD = kube_server_module.BackgroundBuild()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the real-server tests last and start building the server now, so a cold build
    (about 5 minutes) overlaps the rest of the suite instead of adding to it."""
    real = [item for item in items if item.get_closest_marker("kube_server") is not None]
    if not real:
        return
    items[:] = [item for item in items if item.get_closest_marker("kube_server") is None] + real
    for item in real:  # one server per session: keep them on one pytest-xdist worker
        item.add_marker(pytest.mark.xdist_group("kube-server"))
    _BUILD.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    _BUILD.stop()  # a build the session no longer needs (e.g. interrupted): the next one resumes


@pytest.fixture(scope="session")
def kube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """etcd + kube-apiserver v1.20.2 on 127.0.0.1 for the session; skips where they cannot be built."""
    waited = time.monotonic()
    try:
        bin_dir = _BUILD.wait()
    except RuntimeError as exc:
        pytest.skip(f"no real Kubernetes API server here: {exc}")
    sys.stderr.write(f"\nkube_server: waited {time.monotonic() - waited:.1f} s for the build\n")
    server = kube_server_module.KubeServer(bin_dir, tmp_path_factory.mktemp("kube-server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_namespace(kube_server: Any) -> str:
    """A fresh namespace per test (there is no controller manager to empty a deleted one)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_server.create_namespace(name)
    return name


@pytest.fixture
def real_config(kube_server: Any, kube_namespace: str, tmp_path: Path) -> dict[str, Any]:
    """A ``plugin.k8s.conf.yaml`` pointing at the real server as its admin, in a fresh namespace."""
    kubeconfig = kube_server.kubeconfig(
        tmp_path / "real-kubeconfig.yaml", kube_server_module.ADMIN_TOKEN, kube_namespace
    )
    return {
        "kubeConfigFile": str(kubeconfig),
        "kubeConfigContext": "real",
        "outfacingPredictionURLPrefix": "https://models.example.com/deployments",
        "ingressClass": "mlops",
        "ppsBaseImage": "registry.example.com/shipmate/prediction-server:0.1.0",
        "generatedImageRepo": "registry.example.com/mlops/frozen-models",
        "kanikoImage": "registry.example.com/kaniko-project/executor:v1.23.2",
        "kanikoSecretName": "registry-creds",
        "kanikoServiceAccount": "shipmate-image-builder",
        "pollIntervalSeconds": 0.05,
        "rolloutTimeoutSeconds": 20,
        "buildTimeoutSeconds": 20,
    }


@pytest.fixture
def kubelet(kube_server: Any, kube_namespace: str) -> Iterator[Any]:
    with kube_server_module.Kubelet(kube_server, kube_namespace) as running:
        yield running
    assert running.errors == [], running.errors
