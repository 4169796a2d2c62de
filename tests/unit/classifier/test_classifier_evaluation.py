"""Dataset evaluation run in worker processes (classifier.evaluation).

The parallel path must only change where the work runs: on small synthetic
datasets its reports are the sequential ones, figure for figure (the sentence
embeddings excepted, whose float rounding depends on how texts are batched).
"""

from __future__ import annotations

import random

import pytest

from classifier import embeddings
from classifier.cli import main
from classifier.datasets import Dataset
from classifier.evaluation import evaluate_datasets, format_table

TOPICS = {
    "refund": ["refund", "money back", "return my payment", "reimburse"],
    "password": ["password", "log in", "reset my login", "sign in"],
    "delivery": ["delivery", "parcel", "shipping", "package arrive"],
    "card": ["card", "debit card", "credit card", "card blocked"],
}
OOS = ["what is the weather", "tell me a joke", "who won the game", "sing a song"]


def _dataset(name: str, seed: int, n: int, oos: bool, language: str = "en") -> Dataset:
    rnd = random.Random(seed)
    openers = ["please help with", "I have a question about", "problem with", "how do I fix", ""]

    def pairs(k: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(k):
            label = rnd.choice(sorted(TOPICS))
            out.append((f"{rnd.choice(openers)} {rnd.choice(TOPICS[label])} {rnd.randint(1, 99)}", label))
            if oos and rnd.random() < 0.2:
                out.append((f"{rnd.choice(OOS)} {rnd.randint(1, 99)}", "oos"))
        return out

    return Dataset(
        name=name,
        train=pairs(n),
        validation=pairs(n // 3),
        test=pairs(n // 3),
        out_of_scope_label="oos" if oos else None,
        expected_oos_share=0.15 if oos else None,
        language=language,
    )


def _without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("fit_seconds", "total_seconds")}


@pytest.mark.parametrize("refit", [False, True])
def test_worker_processes_give_the_sequential_reports(refit):
    datasets = [_dataset("small", 1, 120, oos=True), _dataset("larger", 2, 300, oos=False)]
    kwargs = dict(params={"linear": "svm"}, refit_with_validation=refit)
    sequential = evaluate_datasets(datasets, workers=1, **kwargs)
    lines: list[str] = []
    parallel = evaluate_datasets(datasets, workers=2, progress=lines.append, **kwargs)
    assert [r["dataset"] for r in parallel] == ["small", "larger"]
    assert [_without_timings(r) for r in parallel] == [_without_timings(r) for r in sequential]
    # The workers' fits are reported as they finish, each line naming its dataset.
    fitted = [line for line in lines if " fitted on " in line]
    assert len(fitted) == (4 if refit else 2)
    assert all(line.split(":")[0] in ("small", "larger") for line in fitted)


@pytest.mark.skipif(not embeddings.available(), reason="sentence-embedding extra not installed "
                    "(make embeddings)")
def test_worker_processes_with_embeddings_match_the_sequential_run():
    datasets = [_dataset("emb", 3, 90, oos=True)]
    kwargs = dict(params={"linear": "svm", "embeddings": True}, refit_with_validation=True)
    lines: list[str] = []
    (sequential,) = evaluate_datasets(datasets, workers=1, **kwargs)
    (parallel,) = evaluate_datasets(datasets, workers=2, progress=lines.append, **kwargs)
    assert "emb: encoding" in lines[0] and any("emb: sentence embeddings computed" in x for x in lines)
    assert parallel["n_features"] == sequential["n_features"]
    for split in ("validation", "test"):
        assert parallel[split]["accuracy"] == sequential[split]["accuracy"]
    # Embeddings batched differently round differently (~1e-7), nothing more.
    assert parallel["threshold"] == pytest.approx(sequential["threshold"], abs=1e-4)


@pytest.mark.parametrize("workers", [1, 2])
def test_embeddings_are_skipped_explicitly_for_other_languages(workers):
    # Runs without the extra too: a skipped block never loads the encoder.
    zh = _dataset("zh", 4, 90, oos=False, language="zh")
    lines: list[str] = []
    (report,) = evaluate_datasets(
        [zh], workers=workers, params={"embeddings": True}, progress=lines.append
    )
    assert "English-only" in report["embeddings_skipped"]
    assert report["params"]["embeddings"] is False
    assert any(line.startswith("zh: without sentence embeddings") for line in lines)
    assert "zh: no sentence embeddings, language 'zh'" in format_table([report])
    (plain,) = evaluate_datasets([zh], workers=workers)
    assert "embeddings_skipped" not in plain
    assert report["test"] == plain["test"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--workers", "0"], "--workers must be >= 1"),
     (["--embeddings-all-languages"], "needs --embeddings")],
)
def test_eval_options_are_checked(extra, message, capsys):
    assert main(["faq", "eval", "--dataset", "clinc150", *extra]) == 2
    assert message in capsys.readouterr().err
