"""`scalelab report DIR` -> DIR/report.html: one self-contained page (inline CSS, base64 PNGs, no
scripts, no network) with the status, runs, curves by grid key, every fit and proposal in the
folder with its intervals and diagnostics, and predicted against measured for a closed loop.
Checked on the study fixtures (tests/data/README_studies.md) by parsing the page, and in a real
headless Chromium (Debian package `chromium`): no console errors, every table and image there
and non-empty; a screenshot is saved.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from analysis_data import mpl_study
from typer.testing import CliRunner

import scalelaws as sl
from scalelab.cli import app, main

DATA = Path(__file__).resolve().parent / "data"


class Page(HTMLParser):
    """Tables (id -> rows of cell texts), images (alt -> src), headings, links, scripts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.images: dict[str, str] = {}
        self.headings: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "table":
            self.tables.append((a.get("id") or a.get("class") or "", []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images[a["alt"]] = a["src"]
        elif tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        for buf in (self._cell, self._heading):
            if buf is not None:
                buf.append(data)

    def table(self, name: str) -> list[list[str]]:
        return next(rows for key, rows in self.tables if key == name)


def png_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def quickstart(tmp_path) -> Path:
    """The quickstart fixture and its validation study, side by side, in a scratch folder."""
    for name in ("study_quickstart", "study_quickstart_validate"):
        shutil.copytree(DATA / name, tmp_path / name)
    return tmp_path / "study_quickstart"


def test_report_of_a_closed_loop_study_has_every_section(quickstart):
    path = sl.write_report(quickstart)
    assert path == quickstart / "report.html"
    text = path.read_text()
    page = Page(text)
    # self-contained: no scripts, no stylesheet links, no URL that leaves the page
    assert "script" not in page.tags and "link" not in page.tags and "<style>" in text
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), page.urls
    assert page.headings[0] == "Study study_quickstart"
    for h in ("Status", "Runs", "Curves by grid key", "Fits and proposals", "Closed loop"):
        assert h in page.headings
    assert 'class="s-completed">completed: 8<' in text
    # the runs table: one row per trial, with its grid point and losses
    runs = pl.read_parquet(quickstart / "runs.parquet")
    rows = page.table("runs")
    head, body = rows[0], rows[1:]
    assert head[:4] == ["trial", "grid.model.size", "grid.schedule", "status"]
    assert sorted(r[0] for r in body) == sorted(runs["trial"])
    for r in body:
        final = runs.filter(pl.col("trial") == r[0])["final_eval_loss"][0]
        assert float(r[head.index("final_eval_loss")]) == pytest.approx(final, rel=1e-4)
    # figures: curves per grid key, the fit, the proposal, predicted vs measured; real PNGs
    assert set(page.images) == {
        "curves by model.size",
        "curves by schedule",
        "Multi-power law fit",
        "Proposed LR schedule",
        "predicted vs measured",
    }
    for alt, src in page.images.items():
        w, h = png_size(src)
        assert w >= 300 and h >= 200, alt
    # the fit: every parameter with its value and 95% interval; metrics; its diagnostic
    fit = json.loads((quickstart / "mpl_fit.json").read_text())
    params = {r[0]: r[1:] for r in page.table("fit")[1:] if r[0] in fit["params"]}
    assert set(params) == set(fit["params"])
    for name, (value, lo, hi) in params.items():
        assert float(value) == pytest.approx(fit["params"][name], rel=1e-4)
        assert [float(lo), float(hi)] == pytest.approx(fit["intervals"][name], rel=1e-4)
    metrics = page.table("metrics")
    assert metrics[0][0] == "curves" and {r[0] for r in metrics[1:]} == {"fit", "test"}
    diag = page.table("diagnostics")
    assert diag[1][:2] == ["warning", "PARAM_AT_BOUND"] and "beta" in diag[1][2]
    # the proposal: predicted final loss of each schedule with its interval
    prop = json.loads((quickstart / "proposed_schedule.json").read_text())
    table = [t for k, t in page.tables if k == "fit"][1]
    assert table[0][:2] == ["schedule", "predicted final loss"]
    got = {r[0]: float(r[1]) for r in table[1:]}
    assert got["proposed"] == pytest.approx(prop["predicted_final_loss"], rel=1e-4)
    assert got["wsd"] == pytest.approx(prop["baselines"]["wsd"]["predicted_final_loss"], rel=1e-4)
    # closed loop: measured = mean over the validation runs of each schedule
    check = pl.read_parquet(quickstart.parent / "study_quickstart_validate" / "runs.parquet")
    loop = {r[0]: r for r in page.table("closed-loop")[1:]}
    assert set(loop) == {"proposed", "cosine", "wsd"}
    for label, name in (("proposed", "array"), ("cosine", "cosine"), ("wsd", "wsd")):
        mean = check.filter(pl.col("schedule") == name)["final_eval_loss"].mean()
        assert float(loop[label][4]) == pytest.approx(mean, rel=1e-4)
        assert loop[label][6] == "2"  # seeds
    # next to it: the proposal minus each baseline, paired by seed (2 seeds: too few)
    paired = page.table("paired")
    assert paired[0] == ["comparison", "mean", "95% lo", "95% hi", "n", "excludes_zero"]
    for row, name in zip(paired[1:], ("cosine", "wsd"), strict=True):
        by_seed = {
            s: check.filter((pl.col("schedule") == s) & pl.col("seed").is_in([0, 1]))
            .sort("seed")["final_eval_loss"]
            .to_numpy()
            for s in ("array", name)
        }
        diff = (by_seed["array"] - by_seed[name]).mean()
        assert row[0] == f"proposed − {name}" and row[4] == "2"
        assert float(row[1]) == pytest.approx(diff, rel=1e-4)
    assert "TOO_FEW_SEEDS" in text


def test_report_of_cbs_and_capacity_studies(tmp_path):
    for name, title, param in (
        ("study_cbs", "Critical batch size (EWA eval loss)", "b_crit[6K/D=2.56e+05]"),
        ("study_capacity", "Knowledge capacity", "R"),
    ):
        root = shutil.copytree(DATA / name, tmp_path / name)
        page = Page(sl.write_report(root).read_text())
        assert any(h.startswith(title) for h in page.headings), page.headings
        rows = {r[0]: r for r in page.table("fit")[1:]}
        assert param in rows and float(rows[param][1]) > 0
        assert all(src.startswith("data:image/png") for src in page.images.values())
        assert "Closed loop" in page.headings  # says there is none
    cbs = Page((tmp_path / "study_cbs" / "report.html").read_text())
    assert float({r[0]: r for r in cbs.table("fit")}["b_crit[6K/D=2.56e+05]"][1]) == (
        pytest.approx(40.0, rel=1e-3)
    )
    assert [a for a in cbs.images if a.startswith("curves by")] == [
        "curves by model.size",
        "curves by batch_size",
        "curves by optim.lr",
        "curves by total_steps",
    ]


def test_report_of_tables_written_before_the_grid_columns(tmp_path):
    """Old tables: the grid keys are the runs columns that vary (schedule, seed)."""
    root = mpl_study(tmp_path / "old", grid=False, total=300)
    page = Page(sl.write_report(root).read_text())
    assert {a for a in page.images} == {"curves by schedule", "curves by seed"}
    assert page.table("runs")[0][:3] == ["trial", "schedule", "seed"]
    assert "Fits and proposals" not in page.headings  # none in the folder: said so
    assert "failed: 1" in (root / "report.html").read_text()


def test_report_command(quickstart, tmp_path, capsys):
    r = CliRunner().invoke(app, ["report", str(quickstart), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    assert f"report: {tmp_path / 'r.html'}" in r.output
    assert (tmp_path / "r.html").stat().st_size > 100_000
    with pytest.raises(SystemExit) as e:  # not a study: one line, exit 2
        main(["report", str(tmp_path / "nothing")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: STUDY:") and "runs.parquet" in err[0]


@pytest.mark.integration
def test_scalelaws_never_imports_wandb_torch_or_ray():
    """The report and the notebooks' helpers are the light side too (a static check of every
    import in scalelaws; tests/test_scalelaws_imports.py runs them)."""
    root = Path(sl.__file__).parent
    for path in root.glob("*.py"):
        for m in re.findall(r"^\s*(?:import|from)\s+(\w+)", path.read_text(), re.M):
            assert m not in ("wandb", "torch", "ray", "scalelab"), (path.name, m)


# --------------------------------------------------------------------------- in a browser

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const d = document.body.dataset;
  d.images = imgs.length;
  d.imagesOk = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.width > 0).length;
  d.tables = document.querySelectorAll("table").length;
  d.emptyTables = [...document.querySelectorAll("table")].filter(t => t.rows.length < 2).length;
  d.runsRows = document.querySelector("#runs").rows.length;
  d.height = document.documentElement.scrollHeight;
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip(
        "SKIPPED the browser check of report.html: no Chromium; install the Debian package "
        "`chromium` (apt-get install -y chromium; `make test` does it as root)"
    )


def browse(url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_report_in_headless_chromium(quickstart, tmp_path):
    page = sl.write_report(quickstart)
    # the page as written: no console message at all (errors, warnings, failed loads)
    shot = tmp_path / "report.png"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = browse(probe.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = dict(re.findall(r'data-([a-z-]+)="(\d+)"', dom.stdout.split("<body", 1)[1][:400]))
    assert int(found["images"]) == 5 and found["images-ok"] == found["images"]
    # runs; the fit's parameters, metrics, diagnostics; the proposal and its baselines; the loop
    # and its paired differences with their diagnostics
    assert found["tables"] == "9" and found["empty-tables"] == "0"
    assert found["runs-rows"] == "9"  # header + 8 trials
    height = min(int(found["height"]), 12000)
    run = browse(page.as_uri(), f"--screenshot={shot}", f"--window-size=1280,{height}")
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    w, h = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (w, h) == (1280, height) and shot.stat().st_size > 100_000
    keep = Path(__file__).resolve().parents[1] / "results" / "report_screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(shot, keep)  # look at it: results/ is git-ignored
    print(f"screenshot: {keep}")
