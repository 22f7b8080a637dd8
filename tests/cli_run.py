"""The real command line in a test: scalelab.cli.main and its one error path."""

from __future__ import annotations

import pytest

from scalelab.cli import main


def cli(argv: list, capsys) -> tuple[int, str, str]:
    """Run `scalelab ARGV...` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_error_line(err: str) -> str:
    """stderr holds exactly one line, `error: ...`, and no traceback: return it."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]
