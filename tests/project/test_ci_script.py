"""`.ci/run` refuses to test without Chromium, so CI can never stay green with the report unopened."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "dirname", "env", "cat")  # what the script needs besides the fakes below


def fake_path(tmp_path: Path, apt_get_exit: int) -> str:
    """A PATH holding bash's basics, an `apt-get` that exits `apt_get_exit` and a `make` that records."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\nexit {apt_get_exit}\n")
    (bin_dir / "make").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "make-ran"}\n')
    for fake in ("apt-get", "make"):
        (bin_dir / fake).chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("apt_get_exit", [100, 0], ids=["install fails", "installs no browser"])
def test_ci_stops_before_the_tests_when_chromium_cannot_be_had(tmp_path: Path, apt_get_exit: int) -> None:
    env = {"PATH": fake_path(tmp_path, apt_get_exit), "HOME": str(tmp_path)}
    run = subprocess.run(
        [shutil.which("bash") or "bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True
    )
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert run.stderr.startswith("error: chromium"), run.stderr
    assert not (tmp_path / "make-ran").exists()  # the suite never ran without its browser


def test_ci_runs_the_tests_with_ci_set_when_chromium_is_there(tmp_path: Path) -> None:
    path = fake_path(tmp_path, 100)
    (Path(path) / "chromium").write_text("#!/bin/sh\nexit 0\n")
    (Path(path) / "chromium").chmod(0o755)
    (Path(path) / "make").write_text(f'#!/bin/sh\necho "$CI $@" > {tmp_path / "make-ran"}\n')
    env = {"PATH": path, "HOME": str(tmp_path)}
    run = subprocess.run(
        [shutil.which("bash") or "bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True
    )
    assert run.returncode == 0, run.stderr
    # CI set: the report test fails instead of skipping should the browser vanish later.
    assert (tmp_path / "make-ran").read_text() == "1 test\n"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
