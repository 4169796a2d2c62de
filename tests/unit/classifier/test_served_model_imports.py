"""A served model needs numpy only: scikit-learn and SciPy (~75 and ~22 MiB
of a process's memory) are for training and evaluation, and the static
embedding block needs none of the embeddings extra (tokenizers, safetensors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.knowledge_base import load_knowledge_base
from classifier.service import FaqModel
from classifier.training import train_and_save

ROOT = Path(__file__).resolve().parents[3]
QUESTIONS = ["how do I reset my password", "hello there", "where is my parcel", ""]


# The static embedding block is on by default for large knowledge bases only;
# forced here so the small one has it too.
@pytest.mark.parametrize("static", [False, True], ids=["tfidf", "static-embeddings"])
def test_a_trained_model_answers_without_scikit_learn_or_scipy(tmp_path, write_kb, small_kb_yaml, static):
    kb = write_kb(small_kb_yaml)
    models = tmp_path / "models"
    train_and_save(kb, models, activate=True, version="v0001", progress=lambda _: None,
                   params={"static_embeddings": static})
    probe = (
        "import json, sys\n"
        "from classifier.knowledge_base import load_knowledge_base\n"
        "from classifier.service import FaqModel\n"
        f"model = FaqModel.load_active({str(models)!r}, load_knowledge_base({str(kb)!r}))\n"
        "assert model.compiled.calibration is not None and model.compiled.neighbours is not None\n"
        f"assert (model.compiled.embedding is not None) is {static!r}\n"
        f"questions = {QUESTIONS!r}\n"
        "many = model.predict_many(questions)\n"
        "one = [model.predict(q) for q in questions]\n"
        "print(json.dumps({'many': [[p.intent_id, p.confidence] for p in many],\n"
        "                  'one': [[p.intent_id, p.confidence] for p in one],\n"
        "                  'imported': sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'tokenizers', 'safetensors'})}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    served = json.loads(out.stdout)
    assert served["imported"] == []
    # The same predictions as the model read in this process (which has
    # imported both, training it), one by one and in a batch.
    here = FaqModel.load_active(models, load_knowledge_base(kb)).predict_many(QUESTIONS)
    for got in (served["many"], served["one"]):
        assert [intent for intent, _ in got] == [p.intent_id for p in here]
        for (_, confidence), p in zip(got, here):
            assert abs(confidence - p.confidence) < 1e-9
