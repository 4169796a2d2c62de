"""The demo FAQ model for tests, trained in process from knowledge_base/."""

from __future__ import annotations

from pathlib import Path

from classifier.fast import CompiledClassifier
from classifier.knowledge_base import load_knowledge_base
from classifier.model import IntentClassifier
from classifier.service import FaqModel
from classifier.thresholds import Thresholds

ROOT = Path(__file__).resolve().parents[2]


def train_demo(threshold: float = 0.3) -> FaqModel:
    kb = load_knowledge_base(ROOT / "knowledge_base" / "demo.yaml")
    texts, labels = kb.training_data()
    compiled = CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels))
    return FaqModel(compiled, kb, Thresholds(global_threshold=threshold), version="test")
