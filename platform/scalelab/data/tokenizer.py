"""Word-level tokenizer shared by the synthetic sources; saved as tokenizer.json beside the data.

Ids 0, 1, 2 are the specials <pad>, <bos>, <eos> in every source; words follow from id 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
IGNORE_INDEX = -100  # targets that must not count (torch cross_entropy ignore_index)


class Tokenizer:
    """Fixed vocabulary: specials, then `words` in order (each unique, no whitespace)."""

    def __init__(self, words: Sequence[str]):
        self.vocab = list(SPECIALS) + list(words)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            dup = sorted({w for w in self.vocab if self.vocab.count(w) > 1})
            raise ValueError(f"tokenizer words: duplicates {dup[:5]}")
        bad = [w for w in words if not w or any(c.isspace() for c in w)]
        if bad:
            raise ValueError(f"tokenizer words: {bad[:3]!r} are empty or contain whitespace")

    def __len__(self) -> int:
        return len(self.vocab)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.vocab == other.vocab

    def encode(self, text: str | Iterable[str]) -> list[int]:
        """Whitespace-split words (or a list of words) -> ids; an unknown word is an error."""
        words = text.split() if isinstance(text, str) else list(text)
        try:
            return [self.index[w] for w in words]
        except KeyError as e:
            raise ValueError(f"tokenizer: unknown word {e.args[0]!r}") from None

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Ids -> space-joined words; -100 and (by default) specials are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == IGNORE_INDEX or (skip_special and i < len(SPECIALS)):
                continue
            out.append(self.vocab[i])
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps({"type": "word", "specials": list(SPECIALS), "vocab": self.vocab})

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        d = json.loads(text)
        if d.get("vocab", [])[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError("tokenizer.json: vocab must start with <pad>, <bos>, <eos>")
        return cls(d["vocab"][len(SPECIALS) :])

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls.from_json(Path(path).read_text())
