"""Which language a customer writes in, and which answer to give them.

A message's language decides which of an intent's answers the bot sends. The
channel may say (``locale``, e.g. the browser's ``navigator.language``);
otherwise it is guessed from the text itself. The guess needs no model and no
dependency: scripts that belong to one language decide outright (kana is
Japanese, hangul Korean, Han ideographs with neither are Chinese), and Latin
text is told apart by its commonest short words. A guess that is not clear
returns None, and the knowledge base's default language answers.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# A BCP 47 primary language subtag (ISO 639-1 or -2/3). Region and script
# subtags ("zh-CN", "zh-Hant") are not needed to pick an answer.
_PRIMARY_SUBTAG = re.compile(r"[a-z]{2,3}")
# What channels send: "zh-CN", "en_US", "pt-BR.UTF-8", "C"; the first part is
# the language.
_LOCALE_SPLIT = re.compile(r"[-_.@]")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")
# Scripts that (among the languages a support desk is likely to answer in)
# each mean one language.
_SINGLE_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
)
_WORD = re.compile(r"[^\W\d_]+")
# Short function words, frequent in any sentence and (mostly) proper to one
# language; a customer's question has a few of them.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the a an is are do does i my you your to of and for how what when where why can "
                    "it in on with not have has was be me this that please".split()),
    "de": frozenset("der die das ist sind ich mein meine nicht und wie was wann wo warum kann können "
                    "ein eine einen mit für auf bitte habe hat zu den dem ihr sie".split()),
    "fr": frozenset("le la les est je mon ma mes pas et comment quand où pourquoi peux pouvez un une "
                    "des avec pour sur vous votre mais ce que qui du au".split()),
    "es": frozenset("el la los las es está mi mis no y cómo como qué cuándo dónde por puedo puede un "
                    "una con para mi su del al que se".split()),
    "it": frozenset("il lo la gli le è sono mio mia non e come cosa quando dove perché posso può un "
                    "una con per del della che di".split()),
    "pt": frozenset("o a os as é está meu minha não e como quando onde porque posso pode um uma com "
                    "para do da que de você".split()),
    "nl": frozenset("de het een is zijn ik mijn niet en hoe wat wanneer waar waarom kan kunnen met "
                    "voor op alstublieft heb heeft te".split()),
}
# Each function word's languages: a text's words are looked up once each,
# not once per language.
def _languages_of_words() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for language, words in _STOPWORDS.items():
        for word in words:
            out[word] = (*out.get(word, ()), language)
    return out


_LANGUAGES_OF = _languages_of_words()
# A Latin-script guess needs this many function words and a lead over the
# runner-up; below, the text is too short or too mixed to say.
_MIN_HITS = 2


class InvalidLanguage(ValueError):
    pass


def language_tag(tag: str) -> str:
    """The primary subtag a knowledge base or an answer edit names, checked
    and lower-cased: "zh", "EN" -> "en"; "zh-CN" is refused (name "zh")."""
    if not isinstance(tag, str):
        raise InvalidLanguage(f"a language must be a string, got {type(tag).__name__}")
    lowered = tag.strip().lower()
    if not _PRIMARY_SUBTAG.fullmatch(lowered):
        first = _LOCALE_SPLIT.split(lowered, maxsplit=1)[0]
        hint = f" (use {first!r})" if _PRIMARY_SUBTAG.fullmatch(first) else ""
        raise InvalidLanguage(
            f"{tag!r} is not a BCP 47 primary language subtag: two or three letters such as 'en' or 'zh'{hint}"
        )
    return lowered


def locale_language(locale: str | None) -> str | None:
    """The language of a locale a channel sent ("zh-CN" -> "zh"), or None
    when it names none ("C", "*", "")."""
    if not locale:
        return None
    first = _LOCALE_SPLIT.split(locale.strip().lower(), maxsplit=1)[0]
    return first if _PRIMARY_SUBTAG.fullmatch(first) else None


def detect_language(text: str) -> str | None:
    """The language ``text`` is written in, or None when it cannot be told."""
    if text.isascii():
        # No script but Latin to look for (most messages): only its words tell.
        return _latin_language(text) if _LETTER.search(text) else None
    letters = len(_LETTER.findall(text))
    if not letters:
        return None
    han = len(_HAN.findall(text))
    if han or _KANA.search(text) or _HANGUL.search(text):
        # Japanese mixes kana into Han; Korean writes hangul. A Chinese
        # question quoting a product name ("能用PayPal支付吗") is still
        # Chinese: ideographs carry far more per character than Latin letters.
        kana, hangul = len(_KANA.findall(text)), len(_HANGUL.findall(text))
        if kana and kana * 5 >= han:
            return "ja"
        if hangul and hangul >= han:
            return "ko"
        if han * 4 >= letters - han - kana - hangul:
            return "zh"
    for language, script in _SINGLE_SCRIPTS:
        if len(script.findall(text)) * 2 >= letters:
            return language
    return _latin_language(text)


def _latin_language(text: str) -> str | None:
    hits: dict[str, int] = {}
    for word in _WORD.findall(text.lower()):
        for language in _LANGUAGES_OF.get(word, ()):
            hits[language] = hits.get(language, 0) + 1
    # Only a language with a hit can lead; the others score 0.
    ranked = sorted(zip(hits.values(), hits), reverse=True)
    best, language = ranked[0] if ranked else (0, None)
    runner_up = ranked[1][0] if len(ranked) > 1 else 0
    if best >= _MIN_HITS and best > runner_up:
        return language
    return None


def choose_language(
    available: Collection[str], default: str, *, locale: str | None, text: str
) -> str:
    """The language to answer in: the channel's locale when an answer exists
    in it, else the text's language when one does, else ``default``.

    The locale wins over the text because the channel knows its customer
    (the language they chose in the widget's browser); the text is a guess.
    """
    if len(available) <= 1:
        return default  # one answer: nothing to choose, and no text to scan
    wanted = locale_language(locale)
    if wanted in available:
        return wanted  # type: ignore[return-value]
    detected = detect_language(text)
    if detected in available:
        return detected  # type: ignore[return-value]
    return default
