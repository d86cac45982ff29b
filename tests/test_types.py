"""The type check .ci/run runs (configured in setup.cfg ``[mypy]``: the plugin
contract, canonical types, relay, stream writers, the turn, the example
plugin) passes with zero errors."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_mypy_finds_no_errors():
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
