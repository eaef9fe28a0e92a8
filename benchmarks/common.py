"""What every benchmark ends with (a targets line and its JSON written atomically), and starting
the servers some benchmarks measure."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from edgebert.files import atomic_write
from edgebert.messaging.broker import free_port

__all__ = ["finish", "free_port", "serve"]


def finish(targets: dict[str, bool], result: dict, out: str | Path) -> int:
    """Print 'targets: … met/MISSED' and write ``result`` (plus the targets) to ``out``."""
    if targets:
        print("targets: " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({**result, "targets": targets}, indent=2, default=str))
    print(f"wrote {path}")
    return 0


def serve(cmd: list[str], probe: str, seconds: float = 60.0) -> subprocess.Popen:
    """Start a server process and wait until ``probe`` (a URL) answers, with any status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]}: exited with {proc.returncode} before {probe} answered")
        try:
            urllib.request.urlopen(probe, timeout=1).close()
            return proc
        except urllib.error.HTTPError:
            return proc  # it answers
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{probe}: expected a server within {seconds:.0f} s, found none")
