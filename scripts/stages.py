"""Run toolkit commands as the stages of a script (`demo.py`, `pretrain_vs_random.py`).

Each stage is a real CLI run as a subprocess, so its own progress bar shows; a failing stage raises
`StageFailed` naming it and its exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFIX = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "stage"


def settings_args(settings: dict[str, object]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


class StageFailed(RuntimeError):
    pass


def run_stage(number: str, name: str, argv: list[str], **kwargs) -> None:
    print(f"\n[{PREFIX} {number}] {name}\n$ {shlex.join(argv)}", flush=True)
    started = time.monotonic()
    # Wide enough that rich's summary tables are not cut when the output is not a terminal.
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "140")}
    result = subprocess.run(argv, cwd=ROOT, env=env, **kwargs)
    if result.returncode != 0:
        raise StageFailed(f"stage '{name}' failed with exit code {result.returncode}")
    print(f"[{PREFIX} {number}] {name}: done in {time.monotonic() - started:.1f} s", flush=True)


def script_main(
    doc: str,
    default_out: str,
    sizes: Mapping[str, Any],
    work: Callable[[Path, Any, int], Path],
    finished: Callable[[Path, float], str] | None = None,
    argv: list[str] | None = None,
) -> int:
    """The command line shared by the scripts: --out, --size, --seed; exit 1 naming a failed stage."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / default_out, help=f"output folder (default {default_out}/)"
    )
    parser.add_argument(
        "--size", choices=sorted(sizes), default="full", help="full (the default) or small (CI)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = work(args.out.resolve(), sizes[args.size], args.seed)
    except StageFailed as error:
        print(f"{PREFIX} stopped: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(finished(result, seconds) if finished else f"\nfinished in {seconds:.0f} s; table: {result}")
    return 0
