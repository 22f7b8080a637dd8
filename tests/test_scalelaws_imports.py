"""scalelaws is the light side: importing any of its modules must not pull in torch or ray."""

import json
import pkgutil
import subprocess
import sys

import pytest

import scalelaws


@pytest.mark.integration
def test_scalelaws_modules_import_without_torch_or_ray():
    mods = [
        "scalelaws",
        "scalelaws.core.fitting",
        "scalelaws.multipower.law",
        "scalelaws.multipower.schedule",
    ]
    mods += [m.name for m in pkgutil.walk_packages(scalelaws.__path__, "scalelaws.")]
    code = (
        "import importlib, json, sys\n"
        f"for m in {sorted(set(mods))!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'ray'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert "scalelaws.multipower.plots" in mods and "scalelaws.multipower.schedule" in mods
