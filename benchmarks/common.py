"""What every benchmark ends with: a targets line and its JSON written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from edgebert.files import atomic_write


def finish(targets: dict[str, bool], result: dict, out: str | Path) -> int:
    """Print 'targets: … met/MISSED' and write ``result`` (plus the targets) to ``out``."""
    if targets:
        print("targets: " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({**result, "targets": targets}, indent=2, default=str))
    print(f"wrote {path}")
    return 0
