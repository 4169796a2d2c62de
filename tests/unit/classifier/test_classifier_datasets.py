"""Checks against the real public datasets (../shared/datasets).

Marked ``datasets`` and skipped, with the path that was searched, when the
folder is absent. Models are fitted on subsets to keep the file under a
minute; the full-size figures come from `tierdesk faq eval` (docs/classifier.md).
"""

from __future__ import annotations

from collections import Counter

import pytest

from classifier.datasets import load_banking77, load_clinc150, load_dataset, load_smp2017
from classifier.evaluation import evaluate_dataset
from tierdesk.errors import InvalidInput, NotFound


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(NotFound, match="clinc150.*data_full.json not found.*TIERDESK_DATASETS"):
        load_clinc150(tmp_path)
    with pytest.raises(InvalidInput, match="unknown dataset"):
        load_dataset("mnist", tmp_path)


@pytest.mark.datasets
def test_loaders_match_the_documented_sizes(datasets_dir):
    clinc = load_clinc150(datasets_dir)
    assert (len(clinc.train), len(clinc.validation), len(clinc.test)) == (15100, 3100, 5500)
    assert Counter(label for _, label in clinc.test)["oos"] == 1000
    assert len({label for _, label in clinc.train}) == 151

    banking = load_banking77(datasets_dir)
    assert len(banking.train) + len(banking.validation) == 10003
    assert len(banking.test) == 3080
    assert {label for _, label in banking.validation} == {label for _, label in banking.train}
    assert len({label for _, label in banking.test}) == 77

    smp = load_smp2017(datasets_dir)
    assert (len(smp.train), len(smp.validation), len(smp.test)) == (2299, 770, 667)
    assert len({label for _, label in smp.train}) == 31


@pytest.mark.datasets
def test_chinese_without_segmentation_on_smp2017(datasets_dir):
    smp = load_smp2017(datasets_dir)
    report = evaluate_dataset(smp)
    # Full SMP2017 fits in seconds; a drop below this means the character
    # n-grams stopped working for unsegmented text.
    assert report["test"]["accuracy"] >= 0.88
    assert report["threshold_met_on_validation"]
