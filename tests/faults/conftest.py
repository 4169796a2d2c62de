from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import train_models


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_models(tmp_path_factory.mktemp("models"))
