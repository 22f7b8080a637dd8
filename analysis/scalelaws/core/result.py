"""What every fit and proposal returns: a frozen dataclass with JSON in and out.

Convention for result types (FitResult, CBS fits, capacity, Chinchilla, proposals):
    params       {name: value}
    intervals    {name: (lo, hi)}   95% unless the type says otherwise
    metrics      {name: value}      goodness of fit
    diagnostics  tuple[Diagnostic, ...]
    info         {name: value}      method, units, conventions, counts
and methods predict(...), to_dict(), to_json(path=None), load(path). Subclass `Result`
for to_dict / to_json / save / load / warnings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.io import jsonable, write_json

R = TypeVar("R", bound="Result")


class Result:
    """Mixin for frozen result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": type(self).__name__}
        for f in dataclasses.fields(self):
            out[f.name] = jsonable(getattr(self, f.name))
        return out

    def convention_dict(self) -> dict[str, Any]:
        """The convention's five fields as JSON values, for a result type that writes its own
        to_dict (its own fields first, then these)."""
        return {
            "params": self.params,
            "intervals": self.intervals,
            "metrics": self.metrics,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "info": self.info,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text; with `path`, also written there atomically."""
        doc = self.to_dict()
        if path is not None:
            write_json(path, doc)
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "diagnostics":
                v = tuple(Diagnostic.from_dict(x) for x in v or ())
            elif f.name == "intervals" and isinstance(v, dict):
                v = {k: tuple(x) if isinstance(x, list) else x for k, x in v.items()}
            kwargs[f.name] = v
        return cls(**kwargs)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """Diagnostics of severity warning or error."""
        diags = getattr(self, "diagnostics", ()) or ()
        return tuple(d for d in diags if d.severity != "info")
