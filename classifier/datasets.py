"""Loaders for the public intent datasets used to measure the classifier.

The datasets live outside the repository (``../shared/datasets`` relative to
the project root by default, overridable with ``TIERDESK_DATASETS`` or an
explicit argument) and are never downloaded at run time. Each folder's
README.md describes its provenance and licence; SMP2017 has none, so it is
used for measurement only.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from router.errors import InvalidInput, NotFound

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASET_NAMES = ("clinc150", "banking77", "smp2017")
CLINC_OOS_LABEL = "oos"

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Pairs
    validation: Pairs
    test: Pairs
    # Label of the "things we don't answer" class, when the dataset has one.
    out_of_scope_label: str | None = None
    validation_note: str = ""
    # Share of out-of-scope messages in the traffic the test set stands for.
    # CLINC150's README states it (1,000 of 5,500 test queries, vs 3% of
    # validation); thresholds chosen on validation are re-weighted to it.
    expected_oos_share: float | None = None
    language: str = "en"


def default_datasets_dir() -> Path:
    env = os.environ.get("TIERDESK_DATASETS")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "datasets"


def _require(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise NotFound(
            f"dataset {dataset}: {path} not found. Put the datasets folder at "
            f"{default_datasets_dir()} or point TIERDESK_DATASETS (or --datasets-dir) at it."
        )
    return path


def load_clinc150(root: str | Path | None = None) -> Dataset:
    """CLINC150 "full": out-of-scope examples are merged into every split as
    the label ``oos`` (the "oos-train" setting of Larson et al. 2019)."""
    root = Path(root) if root else default_datasets_dir()
    path = _require(root / "clinc150" / "data_full.json", "clinc150")
    data = json.loads(path.read_text(encoding="utf-8"))

    def pairs(*keys: str) -> Pairs:
        return [(str(t), str(label)) for key in keys for t, label in data[key]]

    return Dataset(
        name="clinc150",
        train=pairs("train", "oos_train"),
        validation=pairs("val", "oos_val"),
        test=pairs("test", "oos_test"),
        out_of_scope_label=CLINC_OOS_LABEL,
        validation_note="official val + oos_val",
        expected_oos_share=len(data["oos_test"]) / (len(data["test"]) + len(data["oos_test"])),
    )


def load_banking77(
    root: str | Path | None = None, *, validation_fraction: float = 0.1, random_state: int = 0
) -> Dataset:
    """BANKING77 has no validation split: a stratified one is carved out of
    train.csv, so the model is trained on the remaining 90%."""
    from sklearn.model_selection import train_test_split

    root = Path(root) if root else default_datasets_dir()
    folder = root / "banking77"

    def read(name: str) -> Pairs:
        with open(_require(folder / name, "banking77"), encoding="utf-8", newline="") as fh:
            return [(row["text"], row["category"]) for row in csv.DictReader(fh)]

    full_train = read("train.csv")
    train, validation = train_test_split(
        full_train,
        test_size=validation_fraction,
        stratify=[label for _, label in full_train],
        random_state=random_state,
    )
    return Dataset(
        name="banking77",
        train=list(train),
        validation=list(validation),
        test=read("test.csv"),
        validation_note=f"stratified {validation_fraction:.0%} of train.csv (seed {random_state})",
    )


def load_smp2017(root: str | Path | None = None) -> Dataset:
    root = Path(root) if root else default_datasets_dir()
    folder = root / "smp2017_ecdt_task1_zh"

    def read(name: str) -> Pairs:
        out: Pairs = []
        with open(_require(folder / name, "smp2017"), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    out.append((row["text"], row["label"]))
        return out

    return Dataset(
        name="smp2017",
        train=read("train.jsonl"),
        validation=read("develop.jsonl"),
        test=read("test.jsonl"),
        validation_note="official develop split",
        language="zh",
    )


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    loaders = {"clinc150": load_clinc150, "banking77": load_banking77, "smp2017": load_smp2017}
    if name not in loaders:
        raise InvalidInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return loaders[name](root)
