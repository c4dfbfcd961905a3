"""BERT's uncased WordPiece tokenizer, as the model's tokenizer.json defines it, in plain Python.

The `tokenizers` package would do the same in Rust, but it requires huggingface_hub and its
download machinery (30 MB mf never uses) and takes 40 ms to load the file and build its tables;
this reads only the vocabulary (a few ms) and tokenizes a question in microseconds. The steps are
those of the Rust implementation (BertNormalizer, BertPreTokenizer, WordPiece, the [CLS] … [SEP]
template); tests compare the ids with `tokenizers` over many texts.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import orjson

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    def __init__(self, tokenizer_json: Path, max_tokens: int = 256):
        spec = orjson.loads(Path(tokenizer_json).read_bytes())
        model = spec["model"]
        self.vocab: dict[str, int] = model["vocab"]
        self.unk = self.vocab[model.get("unk_token", "[UNK]")]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.special = {t["content"]: t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
        self.max_tokens = max_tokens
        self._cache: dict[str, list[int]] = {}

    # ---- normalization and pre-tokenization (BertNormalizer, BertPreTokenizer) -------------------

    @staticmethod
    def _normalize(text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            if ch in "\t\n\r" or ch.isspace():
                out.append(" ")
                continue
            if unicodedata.category(ch).startswith("C"):
                continue
            if _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFD", "".join(out))
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        return text.lower()

    @staticmethod
    def _words(text: str) -> list[str]:
        words, cur = [], []
        for ch in text:
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punct(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    # ---- WordPiece -------------------------------------------------------------------------------

    def _pieces(self, word: str) -> list[int]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        if len(word) > self.max_chars:
            ids = [self.unk]
        else:
            ids, start, vocab = [], 0, self.vocab
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                    if piece in vocab:
                        ids.append(vocab[piece])
                        break
                    end -= 1
                else:
                    ids = [self.unk]
                    break
                start = end
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def _text_ids(self, text: str) -> list[int]:
        ids = []
        for word in self._words(self._normalize(text)):
            ids.extend(self._pieces(word))
        return ids

    def encode(self, text: str) -> list[int]:
        """[CLS] pieces [SEP], cut to max_tokens as `tokenizers` truncates."""
        ids: list[int] = []
        if any(tok in text for tok in self.special):  # special tokens written out are kept whole
            rest = text
            while rest:
                at, tok = min(((rest.find(t), t) for t in self.special if t in rest), default=(-1, None))
                if tok is None:
                    ids.extend(self._text_ids(rest))
                    break
                ids.extend(self._text_ids(rest[:at]))
                ids.append(self.special[tok])
                rest = rest[at + len(tok):]
        else:
            ids = self._text_ids(text)
        return [self.cls, *ids[:self.max_tokens - 2], self.sep]
