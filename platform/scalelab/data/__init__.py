"""Training data sources: a registry of synthetic languages and token files.

    src = build("biod", seed=0, n_people=500)
    t = src.batch(step, batch_size, seq_len, rank, world)   # (batch_size // world, seq_len + 1)
    x, y = inputs_targets(t)                                 # -100 padding -> PAD in inputs

Sources: pcfg (layered CFG language), bios / biod (knowledge, arXiv 2404.05405), tokens (a
memory-mapped nanoGPT-style .bin file, or a folder from `scalelab data prepare`),
python_stdlib (the standard library's source, prepared once; docs/data.md).
"""

from __future__ import annotations

from scalelab.data.base import Source, inputs_targets
from scalelab.data.bios import BioSSource
from scalelab.data.knowledge import BioDSource, FactEval, KnowledgeSource
from scalelab.data.pcfg import PCFGSource
from scalelab.data.stdlib import PythonStdlibSource
from scalelab.data.tokenizer import BOS, EOS, IGNORE_INDEX, PAD, Tokenizer
from scalelab.data.tokens import TokenFileSource

REGISTRY: dict[str, type[Source]] = {
    "pcfg": PCFGSource,
    "bios": BioSSource,
    "biod": BioDSource,
    "tokens": TokenFileSource,
    "python_stdlib": PythonStdlibSource,
}


KNOWLEDGE = ("bios", "biod")  # sources with facts to measure (knowledge_eval)


def _source_class(name: str) -> type[Source]:
    if name not in REGISTRY:
        raise ValueError(f"data.name: unknown source {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(name: str, seed: int = 0, **params) -> Source:
    """The source `name` with `params` (unknown or bad ones raise ValueError naming the field)."""
    return _source_class(name)(seed, **params)


def param_defaults(name: str) -> dict:
    """Allowed params of source `name` with their defaults."""
    return _source_class(name).param_defaults()


def check_params(name: str, params: dict) -> dict:
    """Validate params without building the source (no data generated); returns the full set."""
    return _source_class(name).check(params)


__all__ = [
    "BOS",
    "EOS",
    "IGNORE_INDEX",
    "KNOWLEDGE",
    "PAD",
    "REGISTRY",
    "BioDSource",
    "BioSSource",
    "FactEval",
    "KnowledgeSource",
    "PCFGSource",
    "PythonStdlibSource",
    "Source",
    "TokenFileSource",
    "Tokenizer",
    "build",
    "check_params",
    "inputs_targets",
    "param_defaults",
]
