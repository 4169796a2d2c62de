"""Answer edits per language, on a real SQLite file and the real PostgreSQL,
and the migration that gave them a language."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from storage.engine import create_engines
from storage.faq import FaqRepository
from storage.migrate import upgrade


@pytest.fixture
async def repo(db_url: str):  # type: ignore[no-untyped-def]
    engines = create_engines(db_url)
    yield FaqRepository(engines)
    await engines.dispose()


async def test_an_edit_per_intent_and_language(repo: FaqRepository) -> None:
    await repo.set_answer("shipping", "en", "Two days.", 1.0)
    await repo.set_answer("shipping", "zh", "两天。", 2.0)
    await repo.set_answer("shipping", "zh", "两个工作日。", 3.0)  # replaces its own language only
    await repo.set_answer("hours", "en", "Nine to five.", 4.0)
    assert await repo.answer_overrides() == {
        ("shipping", "en"): "Two days.", ("shipping", "zh"): "两个工作日。", ("hours", "en"): "Nine to five."}
    assert await repo.clear_answer("shipping", "zh")
    assert not await repo.clear_answer("shipping", "zh")
    assert await repo.answer_overrides() == {("shipping", "en"): "Two days.", ("hours", "en"): "Nine to five."}
    await repo.set_answer("shipping", "fr", "Deux jours.", 5.0)
    assert await repo.clear_answer("shipping")  # every language
    assert await repo.answer_overrides() == {("hours", "en"): "Nine to five."}


def test_edits_made_before_languages_are_the_default_languages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0019")  # the head before answers had languages
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO faq_answers (intent_id, answer, updated_at) VALUES ('shipping', 'Two days.', 1)"))
    upgrade(url)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT intent_id, language, answer FROM faq_answers")).all()
        assert [tuple(r) for r in rows] == [("shipping", "en", "Two days.")]
        conn.execute(text("INSERT INTO faq_answers (intent_id, language, answer, updated_at) "
                          "VALUES ('shipping', 'zh', '两天。', 2)"))
    engine.dispose()
