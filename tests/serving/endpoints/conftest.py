"""The iris model served alone, as most endpoint tests use it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient


@pytest.fixture
def iris(make_client: Callable[..., TestClient], packages: dict[str, Path]) -> TestClient:
    return make_client(model=packages["iris"], deployment_id="dep-iris", model_id="model-7")
