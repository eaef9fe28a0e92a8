"""Every example runs on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("[0-9]*.py"))


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, subprocess.Popen]]:
    """Every example started at once (each its own process; together they keep both cores busy)."""
    # tests run on tiny random-weight models; the real MiniLM conversion is the benchmarks' (73 s here)
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES[0].parent.parent), "EDGEBERT_EXAMPLE_TINY": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {script.name: subprocess.Popen([sys.executable, str(script), str(Path(tmp) / script.stem)],
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for script in EXAMPLES}
        yield procs
        for proc in procs.values():
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, runs: dict[str, subprocess.Popen]) -> None:
    stdout, stderr = runs[script.name].communicate(timeout=600)

    assert runs[script.name].returncode == 0, stderr[-2000:]
    assert stdout.rstrip().endswith("done")
