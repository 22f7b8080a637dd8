"""Tokenizers for real text: bytes (no dependency), a byte-level BPE trained here, or a
`tokenizer.json` the user has (both through Hugging Face `tokenizers`, imported only then).

Each maps a list of strings to arrays of ids and has an end-of-text id (`eot_id`) that
separates documents in the token files. Saved as tokenizer.json beside the tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

EOT = "<|endoftext|>"
EOT_NAMES = (EOT, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")  # looked for in a loaded file
UINT16_MAX_VOCAB = 1 << 16  # ids 0..65535


class BytesTokenizer:
    """id = byte value (0..255) of the UTF-8 text; 256 = end of text."""

    kind = "bytes"
    vocab_size = 257
    eot_id = 256
    eot_token = EOT

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), np.uint8) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64)
        parts, start = [], 0
        for i in np.flatnonzero(ids == self.eot_id):
            parts += [ids[start:i].astype(np.uint8).tobytes().decode("utf-8", "replace"), EOT]
            start = i + 1
        parts.append(ids[start:].astype(np.uint8).tobytes().decode("utf-8", "replace"))
        return "".join(parts)

    def to_json(self) -> str:
        return json.dumps({"type": "bytes", "vocab_size": 257, "eot_id": 256, "eot_token": EOT})

    def describe(self) -> dict:
        return {"kind": "bytes", "vocab_size": 257, "eot_id": 256, "eot_token": EOT}


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` with a named end-of-text token."""

    def __init__(self, tok, kind: str, eot_token: str, origin: str = ""):
        self.tok, self.kind, self.eot_token, self.origin = tok, kind, eot_token, origin
        tok.encode_special_tokens = True  # "<|endoftext|>" in a document is text, not a boundary
        self.eot_id = tok.token_to_id(eot_token)
        vocab = tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        fast = getattr(tok, "encode_batch_fast", None)  # no offsets: ~1.5x faster
        self._encode_batch = fast or tok.encode_batch

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        encs = self._encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, np.int64) for e in encs]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tok.to_str()

    def describe(self) -> dict:
        import tokenizers

        d = {
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "eot_token": self.eot_token,
            "library": f"tokenizers {tokenizers.__version__}",
        }
        return d | ({"loaded_from": self.origin} if self.origin else {})


def train_bpe(texts: Iterator[str], vocab_size: int) -> HFTokenizer:
    """A GPT-2-style byte-level BPE (the 256 bytes, merges, then <|endoftext|> as id 0) trained
    on `texts`; fewer tokens than asked when the text has too few pairs to merge."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tok, "bpe", EOT)


def load_file(path: str | Path, eot_token: str | None = None) -> HFTokenizer:
    """A tokenizer.json saved by `tokenizers`; the end-of-text token is `eot_token` or the first
    of EOT_NAMES it has. Raises ValueError naming the file and the fix."""
    from tokenizers import Tokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"--tokenizer: no file {str(path)!r}; give a tokenizer.json, bpe or bytes")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises its own Exception subclasses
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"--tokenizer {path}: does not load as a tokenizers tokenizer.json ({first}); "
            "give a file saved by tokenizers.Tokenizer.save, or --tokenizer bpe / bytes"
        ) from None
    names = [eot_token] if eot_token else list(EOT_NAMES)
    found = next((n for n in names if tok.token_to_id(n) is not None), None)
    if found is None:
        if eot_token:
            raise ValueError(f"--eot-token: {path} has no token {eot_token!r}")
        raise ValueError(
            f"--tokenizer {path}: no end-of-text token (looked for {', '.join(EOT_NAMES)}); "
            "name one with --eot-token"
        )
    return HFTokenizer(tok, "file", found, origin=str(path))


def load_prepared(folder: str | Path) -> BytesTokenizer | HFTokenizer:
    """The tokenizer of a prepared folder (its tokenizer.json and manifest.json)."""
    folder = Path(folder)
    meta = json.loads((folder / "manifest.json").read_text())["tokenizer"]
    if meta["kind"] == "bytes":
        return BytesTokenizer()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return HFTokenizer(tok, meta["kind"], meta["eot_token"], meta.get("loaded_from", ""))


def dtype_for(vocab_size: int, forced: str = "auto") -> str:
    """uint16 when every id fits (vocab <= 65,536), else uint32; a forced uint16 that cannot
    hold the ids raises ValueError naming the fix."""
    fits = vocab_size <= UINT16_MAX_VOCAB
    if forced == "uint16" and not fits:
        raise ValueError(
            f"--dtype uint16: the vocabulary has {vocab_size:,} tokens, ids up to "
            f"{vocab_size - 1:,} do not fit in uint16 (max 65,535); use --dtype uint32 or auto"
        )
    if forced in ("uint16", "uint32"):
        return forced
    return "uint16" if fits else "uint32"
