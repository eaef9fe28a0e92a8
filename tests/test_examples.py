"""Every example runs on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("[0-9]*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    # tests run on tiny random-weight models; the real MiniLM conversion is the benchmarks' (73 s here)
    env = {**os.environ, "PYTHONPATH": str(script.parent.parent), "EDGEBERT_EXAMPLE_TINY": "1"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=600, env=env)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("done")
