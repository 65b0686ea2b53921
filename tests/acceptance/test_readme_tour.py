"""The README's five-minute tour runs as printed, against a real worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def tour_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A five-minute tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block in the tour"
    lines = [ln for ln in block.group(1).splitlines() if not ln.startswith(". .venv")]
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


@pytest.mark.timeout(360)  # two workers, beat and ~40 CLI processes on a 2-core machine
def test_readme_tour_runs_as_printed(stack) -> None:
    stack.apply_shop()
    stack.worker(name="w1")
    stack.worker(name="w2")
    stack.start("beat")
    env = dict(stack.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", tour_script()], env=env, cwd=stack.tmp,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the failing step rolled back, as the tour says
    assert "rolled_back" in result.stdout
    assert "(rollback)" in result.stdout
    statuses = {str(r.status) for r in stack.client.list("shop", "staging", limit=50)}
    assert "rolled_back" in statuses
