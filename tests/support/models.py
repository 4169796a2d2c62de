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


def train_store(root: Path) -> Path:
    """The demo knowledge base trained as `faq train` does, into a models
    directory: v0001 live and v0002 (another seed) beside it, not live."""
    from classifier.training import train_and_save

    kb = ROOT / "knowledge_base"
    train_and_save(kb, root, activate=True, progress=lambda _: None)
    train_and_save(kb, root, activate=False, progress=lambda _: None, random_state=1)
    return root


def copy_store(store: Path, dest: Path, *, versions: int = 1) -> Path:
    """A models directory of one's own, as training only the first
    ``versions`` would have left it: servers write to theirs (activation),
    and training once per test run is what keeps the suite's time down."""
    import shutil

    from classifier.artifact import ACTIVE_FILE, HISTORY_FILE

    dest.mkdir(parents=True)
    for name in (ACTIVE_FILE, HISTORY_FILE):
        shutil.copy2(store / name, dest / name)
    for version in [f"v{i:04d}" for i in range(1, versions + 1)]:
        shutil.copytree(store / version, dest / version)
    return dest
