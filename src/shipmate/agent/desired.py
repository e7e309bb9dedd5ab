"""The agent's view of what the service wants: full snapshots and feed events folded into one map.

Pure (no I/O, no clock, no lock: the runtime holds its lock around each call), so
the ordering rules that keep a stale view from resurrecting a removed deployment
are tested as tables (``tests/agent/test_desired.py``):

- removals are final (ids are never reused): a tombstone outlives any later event;
- a newer generation always wins over an older one, whichever path brought it;
- an event older than the last full snapshot cannot re-add a deployment that snapshot did not list;
- a snapshot keeps what the feed delivered after the snapshot was taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from shipmate.agent.model import DesiredDeployment, ServiceObserved
from shipmate.agent.ports import Change
from shipmate.common.vocabulary import EventType


class DesiredView:
    """Deployment id -> its newest desired spec, as far as the agent knows."""

    def __init__(self) -> None:
        self._specs: dict[str, DesiredDeployment] = {}
        self._seen_at: dict[str, int] = {}
        """Deployment id -> id of the feed event that last set its desired spec."""
        self._removed: set[str] = set()
        """Deployments the service has removed: never brought back."""
        self._snapshot_cursor = 0

    def get(self, deployment_id: str) -> DesiredDeployment | None:
        return self._specs.get(deployment_id)

    def __contains__(self, deployment_id: object) -> bool:
        return deployment_id in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def specs(self) -> list[DesiredDeployment]:
        return list(self._specs.values())

    def as_mapping(self) -> dict[str, DesiredDeployment]:
        return dict(self._specs)

    def apply(self, change: Change) -> str | None:
        """Fold one feed event in; the id of the deployment to look at again, if any."""
        deployment_id = change.deployment_id
        if deployment_id is None:
            return None
        if change.type == EventType.DEPLOYMENT_REMOVED:
            self.remove([deployment_id])
            return deployment_id
        spec = change.spec
        if spec is None or deployment_id in self._removed:
            return None
        current = self._specs.get(deployment_id)
        if current is None and change.id <= self._snapshot_cursor:
            return None  # a newer full snapshot did not list it: it is gone
        if current is not None and current.generation > spec.generation:
            return None
        self._specs[deployment_id] = spec
        self._seen_at[deployment_id] = change.id
        return deployment_id

    def merge(self, cursor: int, deployments: Sequence[DesiredDeployment]) -> None:
        """Merge a full snapshot taken at feed position ``cursor`` with what the feed delivered meanwhile."""
        merged: dict[str, DesiredDeployment] = {}
        for spec in deployments:
            if spec.id in self._removed:
                continue
            current = self._specs.get(spec.id)
            newer = current is not None and current.generation > spec.generation
            merged[spec.id] = current if newer and current is not None else spec
        for deployment_id, current in self._specs.items():
            if deployment_id not in merged and self._seen_at.get(deployment_id, 0) > cursor:
                merged[deployment_id] = current  # learned from the feed after the snapshot was taken
        self._specs = merged
        self._snapshot_cursor = max(self._snapshot_cursor, cursor)

    def remove(self, deployment_ids: Iterable[str]) -> None:
        """The service removed these deployments (a feed event, or a report's outcome)."""
        for deployment_id in deployment_ids:
            self._specs.pop(deployment_id, None)
            self._removed.add(deployment_id)

    def note_reported(self, deployment_id: str, generation: int, observed: ServiceObserved) -> None:
        """The agent reported ``observed`` for ``generation``: the service's record now says so."""
        current = self._specs.get(deployment_id)
        if current is not None and current.generation == generation:
            self._specs[deployment_id] = replace(current, observed=observed)
