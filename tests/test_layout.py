"""The layout stays true: one package per law with the same role modules, laws share only the
core (and the base every law reads), no long module that does several jobs, and the README's
layout tour and docs/concepts.md's module map match the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_layering import ROOTS, _graph

REPO = Path(__file__).resolve().parents[1]
SCALELAWS = ROOTS["scalelaws"]
LAWS = ("multipower", "critical_batch", "capacity", "chinchilla", "hparams")
ROLES = ("law", "fit", "checks", "plots")  # every law package has these modules
# What a law package may import besides itself and scalelaws.core: atomic writes, the LR
# schedules and a study's tables, the base that the platform uses too.
BASE = {"scalelaws", "scalelaws.io", "scalelaws.schedules", "scalelaws.study.load"}
MAX_LINES = 400
# Modules over MAX_LINES that do one job, and the job.
ONE_JOB = {
    "scalelaws/core/fitting.py": "the shared fitting core: a Law's multi-start fit and bootstrap",
    "scalelab/config.py": "the trial and study config dataclasses and their validation",
}


def _packages(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("__init__.py") if p.parent != root)


def _block(path: Path, heading: str) -> list[str]:
    """The lines of the first ```text block after `heading` in a markdown file."""
    text = path.read_text()
    start = text.index(heading)
    match = re.search(r"```text\n(.*?)```", text[start:], re.S)
    assert match, f"{path.name}: no ```text block after {heading!r}"
    return match.group(1).splitlines()


def test_every_law_package_has_the_role_modules():
    packages = {p.name for p in _packages(SCALELAWS)}
    assert set(LAWS) | {"core", "study"} <= packages
    assert packages - {"core", "study"} == set(LAWS), "a new law package: add it to LAWS"
    for law in LAWS:
        missing = [r for r in ROLES if not (SCALELAWS / law / f"{r}.py").exists()]
        assert not missing, f"scalelaws/{law}/ lacks {missing}"


def test_laws_share_only_the_core():
    graph = _graph()
    assert "scalelaws.core.fitting" in graph["scalelaws.multipower.law"]  # the graph is read
    for law in LAWS:
        own = f"scalelaws.{law}"
        for mod, deps in graph.items():
            if mod != own and not mod.startswith(own + "."):
                continue
            for dep in deps:
                if dep.startswith("scalelaws.") and not dep.startswith(
                    (own + ".", "scalelaws.core.")
                ):
                    assert dep in BASE, f"{mod} imports {dep}: shared code belongs in core"


def test_the_core_knows_no_law():
    for mod, deps in _graph().items():
        if mod.startswith("scalelaws.core."):
            bad = {
                d
                for d in deps
                if d.startswith("scalelaws.") and not d.startswith("scalelaws.core.")
            }
            assert not bad - {"scalelaws.io"}, f"{mod} imports {sorted(bad)}"


@pytest.mark.parametrize("root", ["scalelab", "scalelaws"])
def test_no_long_module_does_several_jobs(root):
    base = ROOTS[root].parent
    for path in ROOTS[root].rglob("*.py"):
        key = str(path.relative_to(base))
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            assert key in ONE_JOB, f"{key}: {lines} lines; split it by job (or name its one job)"


def test_the_readme_tour_matches_the_tree():
    lines = _block(REPO / "README.md", "## Layout")
    paths = [line.split()[0] for line in lines if line.strip()]
    assert len(paths) <= 16
    for p in paths:
        assert (REPO / p).exists(), f"README layout names {p}, which is not in the tree"
    for pkg in _packages(SCALELAWS):
        assert f"{pkg.relative_to(REPO)}/" in paths, f"README layout misses {pkg.name}/"


def test_the_module_map_in_the_docs_names_every_package():
    text = "\n".join(_block(REPO / "docs" / "concepts.md", "## Code layout"))
    for root in ROOTS.values():
        for pkg in _packages(root):
            assert re.search(rf"\b{pkg.name}/", text), f"docs/concepts.md misses {pkg.name}/"
    lines = text.splitlines()
    for law in LAWS:  # each law's entry (its line and the deeper-indented ones after it)
        i = next(i for i, x in enumerate(lines) if x.strip().startswith(f"{law}/"))
        indent = len(lines[i]) - len(lines[i].lstrip())
        entry = [lines[i]]
        for x in lines[i + 1 :]:
            if len(x) - len(x.lstrip()) <= indent:
                break
            entry.append(x)
        names = set(re.findall(r"\w+", " ".join(entry)))
        modules = {p.stem for p in (SCALELAWS / law).glob("*.py")} - {"__init__"}
        assert modules <= names, f"docs/concepts.md: {law}/ misses {sorted(modules - names)}"


def test_every_laws_md_citation_names_a_section():
    """`docs/laws.md §N` and `§N.M`, wherever cited (code, notebooks, docs), name a heading."""
    headings = set(
        re.findall(r"^##+ §?(\d+(?:\.\d+)?) ", (REPO / "docs" / "laws.md").read_text(), re.M)
    )
    assert {"1", "1.6", "4", "7"} <= headings
    files = [
        p
        for d in ("platform", "analysis", "experiments", "docs", "tests", "bench")
        for p in (REPO / d).rglob("*")
    ]
    files += [REPO / "README.md"]
    cited = 0
    for path in files:
        if path.suffix not in {".py", ".md", ".ipynb"} or "__pycache__" in path.parts:
            continue
        for ref in re.findall(r"laws\.md[^§\n]{0,3}§ ?(\d+(?:\.\d+)?)", path.read_text()):
            cited += 1
            assert ref in headings, (
                f"{path.relative_to(REPO)} cites docs/laws.md §{ref}: no such section"
            )
    assert cited > 50
