"""Rows to wire shapes, in one place so the API and the event log show the same thing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipmate.common.health import DeploymentView, environment_health
from shipmate.server import schemas
from shipmate.server.models import ApiToken, Deployment, Environment, Event, ModelPackage


def package_summary(package: ModelPackage) -> schemas.ModelPackageSummary:
    return schemas.ModelPackageSummary.model_validate(package)


def package_out(package: ModelPackage) -> schemas.ModelPackageOut:
    return schemas.ModelPackageOut.model_validate(package)


def deployment_out(deployment: Deployment) -> schemas.DeploymentOut:
    return schemas.DeploymentOut(
        id=deployment.id,
        name=deployment.name,
        description=deployment.description,
        environment_id=deployment.environment_id,
        generation=deployment.generation,
        desired=schemas.DesiredSpec(
            state=deployment.desired_state,
            model_package_id=deployment.model_package_id,
            relaunch_generation=deployment.relaunch_generation,
            force=deployment.force,
        ),
        key_value_config=deployment.key_value_config,
        model_package=package_summary(deployment.model_package),
        observed=schemas.Observed(
            state=deployment.observed_state,
            generation=deployment.observed_generation,
            status=deployment.observed_status,
            message=deployment.observed_message,
            action=deployment.observed_action,
            phase=deployment.observed_phase,
            duration=deployment.observed_duration,
            prediction_url=deployment.prediction_url,
            model_package_id=deployment.observed_model_package_id,
            updated_at=deployment.observed_updated_at,
        ),
        created_by=deployment.created_by,
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
    )


def deployment_document(deployment: Deployment) -> dict[str, Any]:
    """The deployment spec as JSON, carried in ``deployment.desired_changed`` events."""
    return deployment_out(deployment).model_dump(mode="json", by_alias=True)


def environment_out(
    environment: Environment, deployments: Sequence[DeploymentView] = ()
) -> schemas.EnvironmentOut:
    """``deployments``: the environment's, as `services.environments.deployment_views` reads them."""
    status, summary = environment_health(environment.health_status, deployments)
    return schemas.EnvironmentOut(
        id=environment.id,
        name=environment.name,
        description=environment.description,
        platform=environment.platform,
        config=environment.config,
        plugin_config=environment.plugin_config,
        health=schemas.Health(
            status=environment.health_status,
            message=environment.health_message,
            data=environment.health_data,
            updated_at=environment.health_updated_at,
        ),
        overall=schemas.OverallHealth(status=status, deployments=summary),
        last_seen_at=environment.last_seen_at,
        agent_version=environment.agent_version,
        created_by=environment.created_by,
        created_at=environment.created_at,
    )


def event_out(event: Event) -> schemas.EventOut:
    return schemas.EventOut.model_validate(event)


def token_out(token: ApiToken) -> schemas.TokenOut:
    return schemas.TokenOut.model_validate(token)
