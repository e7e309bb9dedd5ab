"""Asking the prediction server whether it serves a deployment's model yet.

The plugin's write is done the moment the directory is renamed in, but a prediction
server notices it only at its next scan and then loads the model: reporting ready at the
rename runs seconds ahead of the truth. With ``waitForPredictionServer`` set, a start or
a model replacement asks ``<base>/deployments/<id>`` until it names the new model.
"""

from __future__ import annotations

from shipmate.plugin.errors import ConfigError


def seconds_setting(value: object, key: str, source: str) -> float:
    """A number of seconds >= 0 from the config (absent: 0, off)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key} in {source}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def wait_until_served(base_url: str, deployment_id: str, model_id: str, seconds: float) -> str | None:
    """Ask ``<base>/deployments/<id>`` until it serves ``model_id``; None then, else what it said last."""
    import json  # here, not at the top: the runner's other actions should not pay for urllib
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    last = "does not answer"
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/deployments/{deployment_id}", timeout=2) as response:
                served = json.loads(response.read()).get("modelId")
            if served == model_id:
                return None
            last = f"still serves model {served}"
        except urllib.error.HTTPError as exc:
            last = "does not serve it" if exc.code == 404 else f"answers {exc.code}"
        except (OSError, ValueError, AttributeError):
            last = "does not answer"
        if time.monotonic() >= deadline:
            return last
        time.sleep(0.2)
