"""The forwarder's pure decisions: which originals to re-send after a partly stored merge, and the
back-off between retries."""

from __future__ import annotations

from shipmate.common.backoff import Backoff
from shipmate.monitoring.agent.forwarder import resend_after_partial
from shipmate.monitoring.records import MinuteAggregate, merge_all


def originals(count: int, minute: int = 100) -> list[MinuteAggregate]:
    return [MinuteAggregate(deployment_id="d-1", minute=minute, requests=1) for _ in range(count)]


def test_only_the_originals_the_service_lacks_are_sent_again():
    first = originals(4)
    other = originals(2, minute=101)
    docs = [r.to_json() for r in first + other]
    merged = merge_all([MinuteAggregate.from_json(d) for d in docs])
    assert len(merged) == 2
    seen = [first[0].record_id, first[2].record_id]
    partial = [(merged[0].record_id, seen)]
    again = resend_after_partial(merged, partial, docs)
    assert [d["id"] for d in again] == [first[1].record_id, first[3].record_id]
    assert resend_after_partial(merged, [], docs) == []
    # a partial answer naming a record this batch did not post changes nothing
    assert resend_after_partial(merged, [("unknown", seen)], docs) == []


def test_backoff_doubles_up_to_its_cap_with_jitter_below():
    backoff = Backoff(initial=0.2, maximum=5.0, jitter=0.2)
    delays = [backoff.delay(n) for n in range(1, 12)]
    assert 0.16 <= delays[0] <= 0.2
    assert 0.32 <= delays[1] <= 0.4
    assert all(4.0 <= d <= 5.0 for d in delays[6:])
    assert backoff.delay(10_000) <= 5.0
