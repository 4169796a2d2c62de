"""FAQ tuning over HTTP: model versions, live answer edits, bot misses,
labels of customer questions."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tierdesk.faq_traffic import missed_clusters, shadow_run
from router.model import Role
from tierdesk.errors import InvalidInput, NotFound

from . import keys
from . import schemas as s
from .wire import iso, json, only_params


def _intent_view(model, intent) -> dict:  # type: ignore[no-untyped-def]
    return {"id": intent.id, "kind": "out_of_scope" if intent.out_of_scope else
            "needs_human" if intent.needs_human else "faq",
            "answer": intent.answer, "answers": intent.answers(model.kb.default_language),
            "skill": intent.skill, "threshold": model.thresholds.for_intent(intent.id)
            if intent.threshold is None else intent.threshold, "examples": len(intent.examples)}


async def list_models(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    live = request.app[keys.MODEL]
    return json({"live": live.version, "versions": await asyncio.to_thread(live.versions)})


async def activate_model(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    model = await request.app[keys.MODEL].activate(request.match_info["version"])
    return json({"live": model.version})


async def rollback_model(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    model = await request.app[keys.MODEL].rollback()
    return json({"live": model.version})


async def list_intents(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR, Role.AGENT)
    model = request.app[keys.MODEL].model
    return json({"model": model.version, "default_language": model.kb.default_language,
                 "intents": [_intent_view(model, i) for i in model.kb.intents]})


async def patch_intent(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    patch = s.decode(await request.read(), s.AnswerPatch)
    intent_id = request.match_info["intent_id"]
    live = request.app[keys.MODEL]
    # Validate against the live model before anything is stored.
    kb = live.model.kb
    language = kb.answer_language(patch.language)
    kb.with_answer(intent_id, patch.answer, language)
    await request.app[keys.FAQ].set_answer(intent_id, language, patch.answer, request.app[keys.CLOCK].now())
    model = await live.set_answer(intent_id, patch.answer, language)
    intent = model.kb.get(intent_id)
    return json(_intent_view(model, intent))


async def reset_intent_answer(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    only_params(request, "language")
    intent_id = request.match_info["intent_id"]
    live = request.app[keys.MODEL]
    if live.model.kb.get(intent_id) is None:
        raise InvalidInput(f"unknown intent {intent_id!r}", code="validation_failed")
    tag = request.query.get("language")
    try:
        language = None if tag is None else live.model.kb.answer_language(tag)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), code="validation_failed") from None
    # Swap the live model first: if the knowledge base cannot be read, the
    # stored edit stays and so does the model that serves it.
    model = await live.clear_answer(intent_id, language)
    await request.app[keys.FAQ].clear_answer(intent_id, language)
    return json(_intent_view(model, model.kb.get(intent_id)))


async def reload_knowledge_base(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    model = await request.app[keys.MODEL].reload_knowledge_base()
    return json({"live": model.version, "intents": len(model.kb.intents)})


def _window(request: web.Request, *, days: float, limit: int) -> tuple[float, int]:
    """``?days=&limit=`` (the defaults given): since when, and how many at most."""
    only_params(request, "days", "limit")
    try:
        days = float(request.query.get("days", str(days)))
        limit = int(request.query.get("limit", str(limit)))
    except ValueError:
        raise InvalidInput("days and limit must be numbers", code="validation_failed") from None
    if not (0 < days <= 366) or not (1 <= limit <= 5000):
        raise InvalidInput("days must be in (0, 366] and limit in [1, 5000]", code="validation_failed")
    return request.app[keys.CLOCK].now() - days * 86400, limit


async def list_misses(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    since, limit = _window(request, days=7, limit=2000)
    misses, clusters = await missed_clusters(request.app[keys.FAQ], since, limit)
    return json({
        "since": iso(since),
        "misses": len(misses),
        "clusters": [
            {"size": c.size, "representative": c.representative, "examples": list(c.examples),
             "top_intent": c.top_intent, "reasons": c.reasons,
             "last_seen": iso(max(misses[i].at for i in c.members)),
             "message_ids": [misses[i].message_id for i in c.members][:100]}
            for c in clusters
        ],
    })


async def shadow_model(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    only_params(request, "days")
    try:
        days = float(request.query.get("days", "7"))
    except ValueError:
        raise InvalidInput("days must be a number", code="validation_failed") from None
    if not 0 < days <= 366:
        raise InvalidInput("days must be in (0, 366]", code="validation_failed")
    since = request.app[keys.CLOCK].now() - days * 86400
    report = await shadow_run(request.app[keys.MODEL], request.app[keys.FAQ], request.match_info["version"], since)
    return json(report)


def _label_view(label) -> dict:  # type: ignore[no-untyped-def]
    return {"message_id": label.message_id, "text": label.text, "intent": label.intent,
            "labelled_by": label.labelled_by, "labelled_at": iso(label.labelled_at),
            "predicted": label.predicted, "outcome": label.outcome}


async def put_label(request: web.Request) -> web.Response:
    """An agent or supervisor says what a customer question was: one of the
    knowledge base's FAQ intents, or (intent null) no FAQ at all."""
    principal = await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR, Role.AGENT)
    body = s.decode(await request.read(), s.FaqLabelPut)
    message_id = request.match_info["message_id"]
    if body.intent is not None:
        intent = request.app[keys.MODEL].model.kb.get(body.intent)
        if intent is None or not intent.is_faq:
            raise InvalidInput(f"{body.intent!r} is not an FAQ intent of the knowledge base "
                               "(GET /v1/faq/intents lists them); use null for \"not an FAQ\"",
                               code="validation_failed")
    repo = request.app[keys.FAQ]
    if await repo.customer_message(message_id) is None:
        raise NotFound(f"no customer message {message_id!r}")
    now = request.app[keys.CLOCK].now()
    await repo.set_label(message_id, body.intent, principal.subject_id or principal.role.value, now)
    label = await repo.label(message_id)
    if label is None:  # pragma: no cover - just written, and labels are never deleted
        raise NotFound(f"no label of message {message_id!r}")
    return json(_label_view(label))


async def list_labels(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    since, limit = _window(request, days=30, limit=1000)
    labels = await request.app[keys.FAQ].labels(since, limit)
    return json({"since": iso(since), "labels": [_label_view(x) for x in labels]})
