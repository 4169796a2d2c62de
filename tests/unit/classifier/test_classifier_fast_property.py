"""Property test: the compiled path agrees with scikit-learn on any text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier


@pytest.fixture(scope="module")
def fitted(demo_kb):
    texts, labels = demo_kb.training_data()
    model = IntentClassifier().fit(texts, labels)
    return model, CompiledClassifier.from_fitted(model)


# Mix vocabulary words (so features actually fire) with arbitrary Unicode,
# including full-width forms, CJK, combining marks and odd whitespace.
_words = st.sampled_from(
    ["password", "reset", "refund", "order", "密码", "退款", "ＲＥＳＥＴ", "charged", "twice", "app"]
)
_noise = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12
)
_messages = st.lists(st.one_of(_words, _noise), min_size=0, max_size=12).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(_messages, min_size=1, max_size=5))
def test_compiled_equals_sklearn_for_any_text(fitted, batch):
    model, compiled = fitted
    expected = model.predict_proba(batch)
    np.testing.assert_allclose(compiled.predict_proba_many(batch), expected, rtol=0, atol=1e-6)
    for text, row in zip(batch, expected):
        np.testing.assert_allclose(compiled.predict_proba_one(text), row, rtol=0, atol=1e-6)
