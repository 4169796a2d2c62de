"""`make serve`'s demo model: a model of an older artifact format cannot be
loaded, so the demo set-up trains a current one instead of serving none."""

from __future__ import annotations

import json

from classifier.artifact import MODEL_FORMAT_VERSION, ModelStore, load_model
from classifier.training import train_and_save
from tierdesk.demo import ensure_model
from tierdesk.settings import Settings


def test_an_older_format_model_is_replaced_by_a_trained_one(tmp_path, write_kb, small_kb_yaml):
    kb = write_kb(small_kb_yaml)
    models = tmp_path / "models"
    train_and_save(kb, models, activate=True, version="v0001")
    meta_path = models / "v0001" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 1
    meta_path.write_text(json.dumps(meta))
    lines: list[str] = []

    version = ensure_model(Settings(knowledge_base=kb, models_dir=models), lines.append)

    assert version == "v0002" and ModelStore(models).active_version() == "v0002"
    assert load_model(models / "v0002").metadata.format_version == MODEL_FORMAT_VERSION
    assert any("model v0001 has format version 1" in line for line in lines)
    # A current model is kept as it is.
    assert ensure_model(Settings(knowledge_base=kb, models_dir=models), lines.append) == "v0002"
