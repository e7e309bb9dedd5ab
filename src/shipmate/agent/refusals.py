"""When to stop asking a service that keeps refusing the agent at start-up (a pure decision).

A refusal (401 unknown token, 403 token of another environment, 404 no such
environment) does not heal by waiting, unlike an unreachable service: after a
few tries the agent stops with the reason instead of looping forever. A few
tries, not one, so a token or environment created a moment ago still counts.
"""

from __future__ import annotations

import re

MAX_REFUSALS = 4


FINAL_STATUSES = ("401", "403", "404")
"""Refusals that waiting does not mend; anything else (a 409, a 429) is retried as before."""


def is_final(message: str) -> bool:
    """The refusal names an unknown or revoked token, a foreign environment or a missing one."""
    return bool(re.search(r"(^|: )(" + "|".join(FINAL_STATUSES) + r"): ", message))


def give_up(refusals: int, limit: int = MAX_REFUSALS) -> bool:
    """True once ``refusals`` consecutive final refusals reach ``limit``."""
    return refusals >= limit


def explain(message: str, environment_id: str) -> str:
    """The refusal as a person can act on it (the service's status code picks the advice)."""
    if re.search(r"(^|: )401: ", message):
        advice = "the token is unknown or revoked: set MLOPS_API_TOKEN to an agent token for this environment"
    elif re.search(r"(^|: )403: ", message):
        advice = f"the token belongs to another environment than {environment_id}"
    elif re.search(r"(^|: )404: ", message):
        advice = f"environment {environment_id} does not exist (shipmate env list shows the ids)"
    else:
        advice = "the request was refused"
    return f"{message}: {advice}"
