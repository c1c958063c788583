"""Helpers of the reliability suite: the builder tests' own helpers, CLI runs, process-tree lookups.

The builder's test helpers (`fast_config`, `dataset_snapshot`, `packaged_list`, `cli_env`) live in
tests/idrcell/conftest.py; they are loaded from there rather than copied, so both suites build the
same way.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from idrcell.emulator import EmulatorServer
from idrcell.shards import SHARD_NAME
from idrcell.testpoint import PAUSE_AFTER_VARIABLE, PAUSE_DIR_VARIABLE, REACHED_FILE

_spec = importlib.util.spec_from_file_location(
    "idrcell_test_helpers", Path(__file__).resolve().parents[1] / "idrcell" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
builder_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builder_helpers)

fast_config = builder_helpers.fast_config
dataset_snapshot = builder_helpers.dataset_snapshot
packaged_list = builder_helpers.packaged_list
cli_env = builder_helpers.cli_env

BIN = Path(sys.executable).parent
TINY_LIST = packaged_list("tiny")
# Small shards, so that the merge writes many files and can be caught (and killed) in the middle.
SHARD_SAMPLES = 4


def command(tool: str, *args: str | Path) -> list[str]:
    """The argv of one of the project's console scripts installed next to this interpreter."""
    return [str(BIN / tool), *map(str, args)]


def build_command(out: Path, *extra: str | Path) -> list[str]:
    return command(
        "idrcell", "build", "-e", TINY_LIST, "-o", out, "--max-shard-samples", str(SHARD_SAMPLES), *extra
    )


def temp_files(root: Path) -> list[Path]:
    """What a killed writer leaves: `.NAME.tmp-PID-N` (idrcell.atomic) or `.NAME.PID.tmp` (checkpoints)."""
    return [p for p in root.rglob("*") if ".tmp-" in p.name or p.name.endswith(".tmp")]


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pause_env(env: dict[str, str], request: str, folder: Path) -> dict[str, str]:
    """`env` asking the builder to park for good at `request`, e.g. "staged:5" (idrcell.testpoint)."""
    return {**env, PAUSE_AFTER_VARIABLE: request, PAUSE_DIR_VARIABLE: str(folder)}


def wait_for_pause(process: subprocess.Popen[bytes], folder: Path, timeout_s: float = 120) -> None:
    """Wait until a process started with `pause_env(..., folder)` is parked at its pause point. The
    poll interval only sets how soon the test notices: the point itself is fixed by the request."""
    deadline = time.monotonic() + timeout_s
    while not (folder / REACHED_FILE).exists():
        assert process.poll() is None, f"it ended (exit code {process.returncode}) before its pause point"
        assert time.monotonic() < deadline, f"pause point not reached in {timeout_s} s"
        time.sleep(0.05)


def check_merge_stopped_after(out: Path, reference: Path, samples: int) -> None:
    """A merge killed at `sharded:<samples>`: the shards holding its first `samples` samples are
    complete, with the reference's bytes; the next one is a temporary file; no other shard exists."""
    shards, end, expected = json.loads((reference / "dataset.json").read_text())["shards"], 0, []
    for shard in shards:
        end += shard["samples"]
        if end <= samples:
            expected.append(shard["name"])
    names = sorted(entry.name for entry in (out / "shards").iterdir() if SHARD_NAME.match(entry.name))
    assert names == expected, f"shards at a kill after {samples} samples: {names}"
    for name in names:
        assert (out / "shards" / name).read_bytes() == (reference / "shards" / name).read_bytes(), name
    assert len(temp_files(out / "shards")) == 1, temp_files(out / "shards")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error a CLI printed, asserted to be one sentence on stderr without a traceback."""
    text = " ".join(result.stderr.split())  # rich wraps long lines; the message is one logical line
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert text, f"nothing on stderr; stdout: {result.stdout[-2000:]}"
    return text


@pytest.fixture(scope="session")
def reference_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny list built once through the CLI, without faults or interruptions: the bytes to match."""
    out = tmp_path_factory.mktemp("reference") / "out"
    with EmulatorServer("tiny") as server:
        done = subprocess.run(
            build_command(out, "--jobs", "2"), env=cli_env(server.base_url), capture_output=True, text=True
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so a relative path escaping OUT would show up here."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope="session")
def rel() -> SimpleNamespace:
    """The helpers above for test modules (with --import-mode=importlib they cannot import conftest)."""
    names = ("fast_config", "dataset_snapshot", "packaged_list", "cli_env", "command", "build_command",
             "temp_files", "children", "cmdline", "one_line_error", "pause_env", "wait_for_pause",
             "check_merge_stopped_after", "TINY_LIST", "SHARD_SAMPLES")  # fmt: skip
    return SimpleNamespace(**{name: globals()[name] for name in names})


@pytest.fixture(scope="session")
def tiny_emulator_url() -> str:
    """One fault-free tiny emulator for the session's CLI runs."""
    with EmulatorServer("tiny") as server:
        yield server.base_url
