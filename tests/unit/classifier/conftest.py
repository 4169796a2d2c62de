"""Shared fixtures for the classifier tests.

The demo model is trained once per session (about ten seconds): several tests
need a realistic model, and retraining it per test would dominate the run.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from classifier.knowledge_base import KnowledgeBase, load_knowledge_base

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEMO_KB = PROJECT_ROOT / "knowledge_base" / "demo.yaml"
DATASETS = Path(os.environ.get("TIERDESK_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))


@pytest.fixture
def write_kb(tmp_path):
    """Write dedented YAML to a file and return its path."""

    def write(text: str, name: str = "kb.yaml", directory: Path | None = None) -> Path:
        path = (directory or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


SMALL_KB_YAML = """
default_skill: general
intents:
  - id: greet
    answer: Hello!
    examples: [hello there, hi, good morning, hey, 你好]
  - id: bye
    answer: Goodbye!
    examples: [bye, see you later, goodbye, farewell, 再见]
  - id: refund
    needs_human: true
    skill: billing
    examples: [I want a refund, money back please, refund my order, 我要退款]
  - id: oos
    out_of_scope: true
    examples: [what is the weather, tell me a joke, who won the game]
"""


@pytest.fixture
def small_kb_yaml() -> str:
    return SMALL_KB_YAML


@pytest.fixture
def small_kb(write_kb) -> KnowledgeBase:
    return load_knowledge_base(write_kb(SMALL_KB_YAML))


@pytest.fixture(scope="session")
def demo_kb_path() -> Path:
    return DEMO_KB


@pytest.fixture(scope="session")
def demo_kb() -> KnowledgeBase:
    return load_knowledge_base(DEMO_KB)


@pytest.fixture(scope="session")
def demo_trained(demo_kb):
    from classifier.training import train

    return train(demo_kb, random_state=0)


@pytest.fixture(scope="session")
def trained_demo_model(demo_kb, demo_trained):
    from classifier.service import FaqModel

    return FaqModel(demo_trained.compiled, demo_kb, demo_trained.thresholds)


@pytest.fixture
def datasets_dir() -> Path:
    """The shared datasets folder, or a skip saying where it was looked for."""
    if not (DATASETS / "clinc150" / "data_full.json").is_file():
        pytest.skip(
            f"datasets not found at {DATASETS} (set TIERDESK_DATASETS to the folder holding "
            "clinc150/, banking77/, smp2017_ecdt_task1_zh/)"
        )
    return DATASETS
