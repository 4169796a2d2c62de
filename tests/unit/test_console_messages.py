"""The console's one message catalogue: every key in both languages, and
every key the templates and scripts use is in it."""

from __future__ import annotations

import re
from pathlib import Path

from tierdesk.console.messages import MESSAGES, pick_language, translate

CONSOLE = Path(__file__).resolve().parents[2] / "tierdesk" / "console"


def test_english_and_chinese_have_the_same_keys() -> None:
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    for key, text in MESSAGES["zh"].items():
        assert text.strip(), key


def test_every_key_used_is_in_the_catalogue() -> None:
    used: set[str] = set()
    widget = CONSOLE.parent / "channels" / "static" / "widget.js"
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("static/*.js"), CONSOLE / "pages.py", widget]:
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z_]+\.[a-z_.]+)['"]""", path.read_text()))
        used |= set(re.findall(r"""translate\(\w+(?:\(request\))?, ['"]([a-z_]+\.[a-z_.]+)['"]""", path.read_text()))
    assert used, "no keys found: the pattern is broken"
    assert used - MESSAGES["en"].keys() == set()


def test_language_choice() -> None:
    assert pick_language(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert pick_language("en", "zh-CN") == "en"
    assert pick_language(None, "fr-FR") == "en"
    assert translate("zh", "signin.throttled", seconds=30) == "登录失败次数过多。请等待 30 秒后重试。"
