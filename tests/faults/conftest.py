from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import copy_store


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory, demo_store: Path) -> Path:
    return copy_store(demo_store, tmp_path_factory.mktemp("faults") / "models")
