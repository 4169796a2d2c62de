"""BERT's uncased WordPiece tokenizer (BertNormalizer, BertPreTokenizer,
greedy longest-match WordPiece) in plain Python.

The static embedding block (static_embeddings.py) indexes its table by these
ids, and serving must not need the optional ``tokenizers`` package, so this
re-implements what all-MiniLM-L6-v2's tokenizer does with
``add_special_tokens=False``. It gave the same ids as ``tokenizers`` on every
message of BANKING77, CLINC150 and SMP2017 (bench/static_embeddings_probe.py,
2026-12-05); tests/unit/classifier/fixtures/wordpiece_reference.json keeps
reference ids for a few awkward inputs.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

VOCAB_FILE = Path(__file__).with_name("data") / "wordpiece_vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Words whose ids are kept between calls: messages reuse a small vocabulary
# (CLINC150 has 8,376 distinct words), and an entry is a short list.
WORD_CACHE_SIZE = 20_000
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def load_vocab(path: Path = VOCAB_FILE) -> dict[str, int]:
    """One token a line, its id the line number (BERT's vocab.txt)."""
    with open(path, encoding="utf-8") as fh:
        return {line.rstrip("\n"): i for i, line in enumerate(fh)}


class WordPiece:
    def __init__(self, vocab: dict[str, int], max_chars: int = 100) -> None:
        self.vocab = vocab
        self.unk = vocab["[UNK]"]
        self.max_chars = max_chars
        self._kind: dict[str, str] = {}
        self._words: dict[str, list[int]] = {}

    def _char_kind(self, ch: str) -> str:
        """'drop', 'space', 'cjk' or 'punct' (both split off), or 'word'."""
        kind = self._kind.get(ch)
        if kind is None:
            cp, cat = ord(ch), unicodedata.category(ch)
            if cp == 0 or cp == 0xFFFD or (cat.startswith("C") and ch not in "\t\n\r"):
                kind = "drop"
            elif ch in " \t\n\r" or cat in ("Zs", "Zl", "Zp"):
                kind = "space"
            elif any(lo <= cp <= hi for lo, hi in _CJK):
                kind = "cjk"
            elif (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
                  or cat.startswith("P")):
                kind = "punct"
            else:
                kind = "word"
            # Bounded: a message could bring any number of distinct characters.
            if len(self._kind) < 50_000:
                self._kind[ch] = kind
        return kind

    def words(self, text: str) -> list[str]:
        """Lower-cased, accents stripped (NFD, combining marks dropped), split
        on white space, with each punctuation mark and CJK ideograph a word."""
        text = unicodedata.normalize("NFD", text.lower())
        words: list[str] = []
        current: list[str] = []
        for ch in text:
            if unicodedata.category(ch) == "Mn":
                continue
            kind = self._char_kind(ch)
            if kind == "word":
                current.append(ch)
                continue
            if kind == "drop":
                # Removed before splitting: "a\u200bb" is the word "ab".
                continue
            if current:
                words.append("".join(current))
                current = []
            if kind in ("cjk", "punct"):
                words.append(ch)
        if current:
            words.append("".join(current))
        return words

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for word in self.words(text):
            ids = self._words.get(word)
            if ids is None:
                ids = self._word_ids(word)
                if len(self._words) < WORD_CACHE_SIZE:
                    self._words[word] = ids
            out.extend(ids)
        return out

    def _word_ids(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            else:
                # BERT: a word with any piece missing is one [UNK].
                return [self.unk]
            ids.append(found)
            start = end
        return ids
