"""The steps of building a model image with Kaniko: reuse a completed build, share a running one,
or start one and wait for it (`ImageSteps`, a part of the Kubernetes plugin)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shipmate.plugins.kubernetes.build import render_build
from shipmate.plugins.kubernetes.cluster import Cluster, KubernetesApiError
from shipmate.plugins.kubernetes.manifests import owned_by
from shipmate.plugins.kubernetes.naming import (
    ANNOTATION_BASE_IMAGE,
    ANNOTATION_IMAGE,
    COMPONENT_IMAGE_BUILDER,
    LABEL_COMPONENT,
    LABEL_IMAGE_TAG,
    image_tag,
    label_value,
)
from shipmate.plugins.kubernetes.rollout import Phase, assess_build
from shipmate.plugins.kubernetes.settings import KubernetesSettings

log = logging.getLogger(__name__)

POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"


class ImageBuildError(Exception):
    """The Kaniko build of a model image failed; the message says why."""


class ImageSteps:
    """The image-building steps of `KubernetesPlugin`, which provides the cluster, settings and clock."""

    settings: KubernetesSettings
    _sleep: Callable[[float], None]
    _clock: Callable[[], float]

    @property
    def cluster(self) -> Cluster:
        raise NotImplementedError

    def _ensure_image(self, model_id: str, package: bytes) -> str:
        """Build ``<generatedImageRepo>:m-<model id>`` unless a completed build Job says it exists.

        "Already built" is decided by the build Job of that tag: it completed, for
        the same image and the same base image. A failed or different Job is
        replaced by a new build.
        """
        plan = render_build(self.settings, model_id, package)
        cluster = self.cluster
        name = plan.job["metadata"]["name"]
        tag_label = label_value(image_tag(model_id))
        selector = f"{LABEL_COMPONENT}={COMPONENT_IMAGE_BUILDER},{LABEL_IMAGE_TAG}={tag_label}"
        existing = cluster.get("Job", name)
        if existing is not None:
            annotations = existing["metadata"].get("annotations") or {}
            same = (
                annotations.get(ANNOTATION_IMAGE) == plan.image
                and annotations.get(ANNOTATION_BASE_IMAGE) == self.settings.pps_base_image
            )
            verdict = assess_build(existing, [])
            if same and verdict.phase is Phase.COMPLETE:
                log.info("image %s already built (Job %s)", plan.image, name)
                return plan.image
            if same and verdict.phase is Phase.PROGRESSING:
                log.info("image %s is being built by Job %s; waiting for it", plan.image, name)
                return self._wait_for_build(plan.image, name, selector, [])
            cluster.delete("Job", name)
            self._wait_until_gone("Job", name)
        self._refuse_restricted_namespace()
        try:
            job = cluster.create(plan.job)
        except KubernetesApiError as exc:
            if exc.status != 409:
                raise
            # Another action (e.g. a second deployment of the same model) started this build: share it.
            running = cluster.get("Job", name)
            if (
                running is not None
                and (running["metadata"].get("annotations") or {}).get(ANNOTATION_IMAGE) == plan.image
            ):
                log.info(
                    "image %s is being built by another action (Job %s); waiting for it", plan.image, name
                )
                return self._wait_for_build(plan.image, name, selector, [])
            job = self._create_retrying(plan.job)
        created = []
        for configmap in plan.context_configmaps:
            owned = owned_by(configmap, job)
            try:
                created.append(cluster.create(owned)["metadata"]["name"])
            except KubernetesApiError as exc:
                if exc.status != 409:
                    raise
                cluster.delete("ConfigMap", owned["metadata"]["name"])  # left by an interrupted build
                created.append(self._create_retrying(owned)["metadata"]["name"])
        return self._wait_for_build(plan.image, name, selector, created)

    def _refuse_restricted_namespace(self) -> None:
        """Kaniko unpacks image layers as root, which the "restricted" Pod Security Standard forbids:
        its pod would be rejected and the build wait until ``buildTimeoutSeconds`` for nothing."""
        try:
            namespace = self.cluster.read_namespace()
        except KubernetesApiError as exc:
            if exc.status == 403:  # reading namespaces is optional; the build then tells the story
                return
            raise
        labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(POD_SECURITY_ENFORCE) == "restricted":
            raise ImageBuildError(
                f'namespace {self.cluster.namespace} enforces the "restricted" Pod Security Standard '
                f"({POD_SECURITY_ENFORCE}=restricted), which rejects the Kaniko build pod (Kaniko runs as "
                "root): run the plugin in a namespace at baseline or privileged, or build elsewhere"
            )

    def _wait_for_build(self, image: str, job_name: str, selector: str, context: list[str]) -> str:
        deadline = self._clock() + self.settings.build_timeout_seconds
        try:
            while True:
                job = self.cluster.get("Job", job_name)
                if job is None:
                    raise ImageBuildError(
                        f"the image build Job {job_name} for {image} was deleted before it finished"
                    )
                verdict = assess_build(job, self.cluster.list("Pod", selector))
                if verdict.phase is Phase.COMPLETE:
                    return image
                if verdict.phase is Phase.FAILED:
                    raise ImageBuildError(
                        f"building image {image} failed (Job {job_name}): {verdict.message}"
                    )
                if self._clock() >= deadline:
                    self.cluster.delete("Job", job_name)
                    raise ImageBuildError(
                        f"building image {image} took longer than {self.settings.build_timeout_seconds:g} s "
                        f"(Job {job_name}, last seen: {verdict.message}); the build was cancelled"
                    )
                self._sleep(self.settings.poll_interval_seconds)
        finally:
            for name in context:  # the context is only needed while the build runs
                try:
                    self.cluster.delete("ConfigMap", name)
                except KubernetesApiError as exc:
                    log.warning("could not delete build context %s: %s", name, exc)

    def _create_retrying(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, retrying a 409 while a deleted namesake is still being removed."""
        deadline = self._clock() + max(30.0, self.settings.poll_interval_seconds * 10)
        while True:
            try:
                return self.cluster.create(manifest)
            except KubernetesApiError as exc:
                if exc.status != 409 or self._clock() >= deadline:
                    raise
            self._sleep(self.settings.poll_interval_seconds)

    def _wait_until_gone(self, kind: str, name: str) -> None:
        deadline = self._clock() + max(30.0, self.settings.poll_interval_seconds * 10)
        while self.cluster.get(kind, name) is not None and self._clock() < deadline:
            self._sleep(self.settings.poll_interval_seconds)
