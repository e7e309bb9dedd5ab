"""What Kaniko and the kubelet would do with the plugin's build plan, done by the local Docker engine.

The init container's script runs in the real prediction-server base image
(non-root, read-only root filesystem, the ConfigMaps as read-only directories);
the rendered Dockerfile is built on that base image; the resulting model image
is run with the prediction server's security context and answers ``/ping`` and
a prediction. Only Kaniko itself and the cluster are left out.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipmate.plugins.kubernetes.build import BuildPlan, render_build
from shipmate.plugins.kubernetes.settings import parse_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGES = Path(__file__).parents[3] / "images"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"Docker engine tests skipped: the engine does not answer: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def base_image(docker_client: Any) -> str:
    """The prediction-server base image, built (or reused from cache) by the images' own make target."""
    from shipmate import __version__

    result = subprocess.run(
        ["make", "-C", str(IMAGES), "prediction-server"], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        pytest.fail(
            f"make -C images prediction-server failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    reference = f"shipmate/prediction-server:{__version__}"
    docker_client.images.get(reference)
    return reference


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from shipmate.packages import build_sklearn_package

    rng = np.random.default_rng(7)
    features = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    target = (features["a"] > 0).astype(int)
    model = LogisticRegression().fit(features, target)
    path = tmp_path_factory.mktemp("package") / "model.mlpkg"
    build_sklearn_package(model, features.head(5), path, name="k8s-image-test")
    return path.read_bytes()


def _materialise(plan: BuildPlan, root: Path) -> dict[str, dict[str, str]]:
    """Write the context ConfigMaps as directories and return docker volume bindings like the pod's."""
    pod = plan.job["spec"]["template"]["spec"]
    (prepare,) = pod["initContainers"]
    by_configmap = {cm["metadata"]["name"]: cm for cm in plan.context_configmaps}
    volumes = {v["name"]: v for v in pod["volumes"]}
    binds: dict[str, dict[str, str]] = {}
    for mount in prepare["volumeMounts"]:
        volume = volumes[mount["name"]]
        directory = root / mount["name"]
        directory.mkdir(mode=0o755)
        if "configMap" in volume:
            configmap = by_configmap[volume["configMap"]["name"]]
            for key, text in (configmap.get("data") or {}).items():
                (directory / key).write_text(text)
            for key, encoded in (configmap.get("binaryData") or {}).items():
                (directory / key).write_bytes(base64.b64decode(encoded))
            for item in directory.iterdir():
                item.chmod(0o644)  # the kubelet's default mode for ConfigMap files
        else:  # the emptyDir workspace, writable by the pod's user
            directory.chmod(0o777)
        binds[str(directory)] = {"bind": mount["mountPath"], "mode": "ro" if mount.get("readOnly") else "rw"}
    return binds


def _prepare(docker_client: Any, plan: BuildPlan, binds: dict[str, dict[str, str]]) -> tuple[int, str]:
    (prepare,) = plan.job["spec"]["template"]["spec"]["initContainers"]
    container = docker_client.containers.run(
        prepare["image"],
        entrypoint=prepare["command"][:2],
        command=prepare["command"][2:],
        user="10001:10001",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        volumes=binds,
        detach=True,
    )
    try:
        exit_code = int(container.wait(timeout=120)["StatusCode"])
        return exit_code, container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


def _settings(base_image: str) -> Any:
    return parse_settings(
        {
            "outfacingPredictionURLPrefix": "http://127.0.0.1/deployments",
            "ppsBaseImage": base_image,
            "generatedImageRepo": "shipmate-k8s-test/frozen-models",
        }
    )


def test_the_model_image_builds_and_serves_under_the_pod_security_context(
    docker_client: Any, base_image: str, package: bytes, tmp_path: Path
) -> None:
    plan = render_build(_settings(base_image), "model-a", package)
    binds = _materialise(plan, tmp_path)
    exit_code, logs = _prepare(docker_client, plan, binds)
    assert exit_code == 0, logs
    assert "model.mlpkg: OK" in logs
    workspace = tmp_path / "workspace"
    assert (workspace / "model.mlpkg").read_bytes() == package

    tag = f"shipmate-k8s-test/frozen-models:m-{uuid.uuid4().hex[:12]}"
    image, _ = docker_client.images.build(path=str(workspace), tag=tag, rm=True, forcerm=True)
    container = None
    try:
        container = docker_client.containers.run(
            tag,
            user="10001:10001",
            read_only=True,
            tmpfs={"/tmp": "rw,size=256m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            environment={"MLOPS_DEPLOYMENT_ID": "dep-1", "MLOPS_MODEL_ID": "model-a"},
            ports={"8080/tcp": ("127.0.0.1", None)},
            detach=True,
        )
        base_url = _published_url(container)
        _wait_for_ping(base_url, container)
        request = urllib.request.Request(
            f"{base_url}/predictions",
            data=b"a,b,c\n1.0,0.5,-0.2\n-1.0,0.1,0.3\n",
            headers={"Content-Type": "text/csv"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            body = response.read().decode()
        assert "prediction" in body.lower()
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        with contextlib.suppress(Exception):
            docker_client.images.remove(image.id, force=True)


def test_a_corrupted_context_fails_the_build_before_kaniko(
    docker_client: Any, base_image: str, package: bytes, tmp_path: Path
) -> None:
    plan = render_build(_settings(base_image), "model-a", package)
    binds = _materialise(plan, tmp_path)
    part = tmp_path / "part-000" / "part"
    part.chmod(0o644)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    exit_code, logs = _prepare(docker_client, plan, binds)
    assert exit_code != 0
    assert "FAILED" in logs


def _published_url(container: Any) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8080/tcp")
        if bindings:
            return f"http://127.0.0.1:{bindings[0]['HostPort']}"
        time.sleep(0.2)
    raise AssertionError("the model container published no port")


def _wait_for_ping(base_url: str, container: Any) -> None:
    deadline = time.monotonic() + float(os.environ.get("SHIPMATE_TEST_SERVE_TIMEOUT", "180"))
    last: object = None
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"the model container exited: {container.logs().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"/ping never answered ({last}): {container.logs().decode()[-3000:]}")
