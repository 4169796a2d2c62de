"""The baseline: a bare aiohttp handler of the same shape as POST /v1/messages
(read the body, parse JSON, answer JSON), on the same event loop policy."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    answer = {"action": "answer", "text": "echo", "faq_id": body.get("message_id"), "confidence": 1.0}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
