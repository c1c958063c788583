"""One experiment's staging folder and its journal: what makes a killed stage resumable.

Layout of `OUT/staging/<study>_<container>/`:
- `params.json`   what the stage was asked to do; a rerun with other parameters is refused.
- `listing.json`  the cached listing (see listing.py).
- `samples/<image_id>.tar`  one finished sample (json + PNGs), written atomically.
- `journal.jsonl` one line per resolved image: `staged` (its sample file exists) or `skipped` (reason).
- `failures.jsonl` a log of images that were skipped or failed, with details, for people to read.
- `stage.json`    written last, when the experiment is complete: the selection and its counts.

Order of writes for one image: sample file (atomic rename), then its journal line. A SIGKILL can
therefore leave a sample without a journal line (adopted on reopen, since a renamed file is whole)
or a half-written last journal line (dropped on reopen); never a half sample.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from idrcell.atomic import atomic_write_text, remove_stale_temps
from idrcell.shards import parse_member_name, read_tar

Status = Literal["staged", "skipped"]


class StagingLockedError(RuntimeError):
    """Another process is writing the same staging folder."""


@dataclass(frozen=True)
class JournalEntry:
    image_id: int
    status: Status
    key: str | None = None  # staged samples
    n_channels: int | None = None
    reason: str | None = None  # skipped images

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class StagingDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = path / "samples"
        self.params_file = path / "params.json"
        self.listing_file = path / "listing.json"
        self.journal_file = path / "journal.jsonl"
        self.failures_file = path / "failures.jsonl"
        self.stage_file = path / "stage.json"
        self.entries: dict[int, JournalEntry] = {}
        self._journal_handle: Any = None

    def sample_path(self, image_id: int) -> Path:
        return self.samples / f"{image_id}.tar"

    def remove_if_unused(self) -> None:
        """Delete the folder when it holds nothing but the lock and an empty samples/ (a failed start)."""
        leftovers = {entry.name for entry in self.path.iterdir()} if self.path.is_dir() else set()
        if leftovers <= {".lock", "samples"} and not any(self.samples.glob("*")):
            shutil.rmtree(self.path, ignore_errors=True)
            with contextlib.suppress(OSError):  # and the staging/ parent, if this was its only folder
                self.path.parent.rmdir()

    @contextlib.contextmanager
    def locked(self, wait_s: float = 10.0) -> Iterator[StagingDir]:
        """Hold an exclusive lock on the folder; a lock dies with its process, SIGKILL included."""
        self.samples.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+b")  # noqa: SIM115 - held for the whole block
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StagingLockedError(
                            f"{self.path} is being written by another idrcell process"
                        ) from None
                    time.sleep(0.1)
            remove_stale_temps(self.path)
            remove_stale_temps(self.samples)
            yield self
        finally:
            self.close_journal()
            handle.close()

    # -- parameters --------------------------------------------------------------------------
    def check_params(self, params: dict[str, Any], record: bool = True) -> None:
        """Record `params` on first use; refuse to continue a folder staged with other parameters.

        `record=False` only checks: a stage records its parameters once its listing succeeded, so a
        list row that names nothing on the server leaves no parameters to block the corrected row."""
        if self.params_file.exists():
            previous = json.loads(self.params_file.read_text(encoding="utf-8"))
            if previous != params:
                changed = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
                raise ValueError(
                    f"{self.path} was staged with different parameters ({', '.join(changed)}); "
                    "use another --out or delete that folder to start it again"
                )
            return
        if record:
            atomic_write_text(self.params_file, json.dumps(params, sort_keys=True, indent=1))

    # -- journal -----------------------------------------------------------------------------
    def open_journal(self) -> dict[int, JournalEntry]:
        """Load the journal, repair what a kill may have left, and open it for appending."""
        entries: dict[int, JournalEntry] = {}
        lines = self.journal_file.read_bytes().split(b"\n") if self.journal_file.exists() else []
        damaged = False
        for raw in lines:
            if not raw.strip():
                continue
            try:
                entry = JournalEntry(**json.loads(raw))
            except (ValueError, TypeError):
                damaged = True  # a line cut by a kill
                continue
            if entry.status == "staged" and not self.sample_path(entry.image_id).exists():
                damaged = True
                continue
            entries[entry.image_id] = entry
        for sample in sorted(self.samples.glob("*.tar")):
            image_id = int(sample.stem) if sample.stem.isdigit() else None
            if image_id is None or entries.get(image_id, JournalEntry(0, "skipped")).status == "staged":
                continue
            adopted = self._adopt(sample, image_id)
            if adopted is not None:
                entries[image_id] = adopted
                damaged = True
        if damaged:
            atomic_write_text(
                self.journal_file,
                "".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in entries.values()),
            )
        self.entries = entries
        self._journal_handle = open(self.journal_file, "a", encoding="utf-8")  # noqa: SIM115
        return entries

    def _adopt(self, sample: Path, image_id: int) -> JournalEntry | None:
        """A journal entry for a sample file written just before a kill, or None if it is unusable."""
        try:
            members = read_tar(sample)
            meta = json.loads(members[0][1])
            key = parse_member_name(members[0][0])
            assert key is not None and meta["image_id"] == image_id
            return JournalEntry(image_id, "staged", key=key[0], n_channels=int(meta["n_channels"]))
        except Exception:
            sample.unlink(missing_ok=True)
            return None

    def record(self, entry: JournalEntry) -> None:
        self.entries[entry.image_id] = entry
        self._journal_handle.write(json.dumps(entry.to_json(), sort_keys=True) + "\n")
        self._journal_handle.flush()  # in the kernel now: survives SIGKILL of this process

    def log_failure(self, record: dict[str, Any]) -> None:
        with open(self.failures_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")

    def close_journal(self) -> None:
        if self._journal_handle is not None:
            self._journal_handle.close()
            self._journal_handle = None

    # -- completion --------------------------------------------------------------------------
    def read_stage(self) -> dict[str, Any] | None:
        if not self.stage_file.exists():
            return None
        return json.loads(self.stage_file.read_text(encoding="utf-8"))

    def write_stage(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.stage_file, json.dumps(summary, sort_keys=True, indent=1))


def stage_dir(out: Path, name: str) -> StagingDir:
    return StagingDir(Path(out) / "staging" / name)
