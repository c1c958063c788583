"""`make demo`: the main job, stage by stage, stopping at the first failing stage with its error.

Each stage is a real command of the toolkit; a stage appears here only once its command exists.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "demo-out"


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]


def stages() -> list[Stage]:
    return [
        Stage("toolkit versions", [str(BIN / "idrcell"), "--version"]),
        Stage("toolkit versions", [str(BIN / "chadavit-train"), "--version"]),
        Stage("toolkit versions", [str(BIN / "chadavit-bench"), "--version"]),
    ]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    started = time.monotonic()
    for index, stage in enumerate(stages(), start=1):
        print(f"[demo {index}/{len(stages())}] {stage.name}: {shlex.join(stage.argv)}", flush=True)
        result = subprocess.run(stage.argv, cwd=ROOT)
        if result.returncode != 0:
            print(f"demo failed at stage '{stage.name}' (exit {result.returncode})", file=sys.stderr)
            return result.returncode
    print(f"demo finished in {time.monotonic() - started:.1f} s; outputs under {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
