"""The three CLIs share one exit-code convention (README.md, "Exit codes"): a command line naming a
file or folder that does not exist is a usage error, exit 2, with one `error: ` message on stderr
and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the console scripts installed beside this interpreter
USAGE_ERROR = 2

# One bad input per CLI: (console script, its arguments given a scratch folder, what the error names).
CASES = {
    "idrcell": (
        "idrcell",
        lambda tmp: ["build", "--experiments", tmp / "missing.csv", "--out", tmp / "out"],
        "missing.csv",
    ),
    "chadavit-train": (
        "chadavit-train",
        lambda tmp: ["--data", tmp / "no-dataset", "--out", tmp / "out"],
        "no-dataset",
    ),
    "chadavit-bench": (
        "chadavit-bench",
        lambda tmp: ["run", "knn", "--model", tmp / "no-model", "--data-root", tmp, "--out", tmp / "out"],
        "no-model",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_missing_input_is_a_usage_error_that_writes_nothing(case: str, tmp_path: Path) -> None:
    tool, arguments, named = CASES[case]
    result = subprocess.run(
        [str(BIN / tool), *map(str, arguments(tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == USAGE_ERROR, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no stray file
