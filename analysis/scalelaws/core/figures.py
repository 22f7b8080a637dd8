"""Figure helpers every law's plots use: the pyplot handle (Agg), legends, the diagnostics box,
prediction bands, and saving (matplotlib is imported inside the functions, so importing this
module is cheap)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend(ax, n: int) -> None:
    """Inside the axes for a few entries; beside them (outside the data) for more than 6."""
    if n > 6:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif n:
        ax.legend(fontsize=7)


BAND_GID = "prediction-band"  # the gid of every band drawn by `band` (see `bands`)


def band(ax, x, prediction, color, label: str | None = None, alpha: float = 0.18, where=None):
    """Shade a core Prediction's interval [lo, hi] over `x` (the inputs it was made at, on the
    axes' x scale; `where`: only where this mask holds); returns the PolyCollection. Nothing is
    computed here: lo and hi are the library's, so the figure shows the interval it states."""
    poly = ax.fill_between(
        x, prediction.lo, prediction.hi, where=where, color=color, alpha=alpha, lw=0, label=label
    )
    poly.set_gid(BAND_GID)
    return poly


def band_label(prediction, what: str = "") -> str:
    """The legend entry of a band: "90% prediction interval" (+ " (what)")."""
    return f"{100 * prediction.level:.0f}% prediction interval" + (f" ({what})" if what else "")


def bands(fig) -> list:
    """The prediction bands (`band`) drawn on the figure's axes, in drawing order."""
    return [c for ax in fig.axes for c in ax.collections if c.get_gid() == BAND_GID]


def diagnostics_box(fig, diagnostics: Sequence, limit: int = 6) -> None:
    """The warnings among `diagnostics` as a text box at the bottom of the figure."""
    lines = [f"{d.code}: {d.message}" for d in diagnostics if d.severity != "info"]
    if not lines:
        return
    extra = len(lines) - limit
    text = "\n".join(line if len(line) < 130 else line[:127] + "..." for line in lines[:limit])
    text += f"\n... and {extra} more (see the JSON)" if extra > 0 else ""
    fig.subplots_adjust(bottom=0.12 + 0.025 * min(len(lines), limit + 1))
    fig.text(0.01, 0.005, text, fontsize=6, va="bottom", ha="left", color="darkred",
             bbox={"facecolor": "lightyellow", "edgecolor": "darkred", "alpha": 0.9})  # fmt: skip


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out, write the PNG (creating its folder) and free the figure."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with warnings.catch_warnings():  # a text box or outside legend: tight_layout may complain
        warnings.simplefilter("ignore")
        fig.tight_layout(rect=(0, _bottom(fig), 1, 1))
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _bottom(fig) -> float:
    """The share of the figure height the diagnostics box needs (0 without one)."""
    return fig.subplotpars.bottom - 0.1 if fig.texts else 0.0
