"""Module layering: no import cycles in scalelab or scalelaws (function-level imports count too),
scalelaws never imports scalelab, torch or ray, and studies never reach the repo's layout."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"scalelab": REPO / "platform" / "scalelab", "scalelaws": REPO / "analysis" / "scalelaws"}


def _modules() -> dict[str, Path]:
    mods = {}
    for root in ROOTS.values():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(path: Path, name: str, mods: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its file (`from a import b` -> a.b if b is a
    module, else a); relative imports resolved."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
            ]
        else:
            continue
        out |= {t for t in targets if t in mods and t != name}
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, mods) for name, path in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_import_graph_is_found():
    g = _graph()
    assert "scalelab.train.trainer" in g and "scalelaws.schedules" in g["scalelab.config"]
    assert "scalelab.train.step" in g["scalelab.train.trainer"]


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_launch_and_tracking_layers():
    """Inside scalelab.launch only the package imports the driver, and the code that runs in a
    trial imports no other launch module; W&B (scalelab.tracking) never reaches launch."""
    g = _graph()
    launch = {m for m in g if m.startswith("scalelab.launch.")}
    jobs = ("folders", "ray_session", "resources", "forks", "driver", "trial")
    assert launch == {f"scalelab.launch.{m}" for m in jobs}
    assert [m for m in g if "scalelab.launch.driver" in g[m]] == ["scalelab.launch"]
    assert not g["scalelab.launch.trial"] & launch
    tracking = [m for m in g if m.startswith("scalelab.tracking")]
    assert len(tracking) == 5  # the package, runs, analysis_run, dashboard, hooks
    assert not any(d.startswith("scalelab.launch") for m in tracking for d in g[m])


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("banned", ["scalelab", "torch", "ray"])
def test_scalelaws_stays_light(banned):
    for path in ROOTS["scalelaws"].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            assert not any(n.split(".")[0] == banned for n in names), (path, banned)


def test_studies_never_reach_the_repo_layout():
    for path in [*(REPO / "experiments").glob("*.py"), *ROOTS["scalelab"].rglob("*.py")]:
        text = path.read_text()
        assert "parents[" not in text and "__file__).parent" not in text, path
