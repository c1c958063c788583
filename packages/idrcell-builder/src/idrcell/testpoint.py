"""Tests only: park a build for good once it has written N samples, so that a kill test's SIGKILL
lands at that point on a fast or a loaded machine alike.

Two environment variables ask for it; when `IDRCELL_TEST_PAUSE_AFTER` is unset (or empty) the hook
costs one environment lookup per sample and changes nothing. A malformed request is a one-line usage
error of every `idrcell` command (cli.py checks it before any work).

    IDRCELL_TEST_PAUSE_AFTER=staged:N    N sample files renamed into place in staging folders
                                          (stage.py); any further sample write waits before it starts.
    IDRCELL_TEST_PAUSE_AFTER=sharded:N   N samples read into shards by `write_dataset` (merge,
                                          import-images, import-hf); it then waits before reading the
                                          next one, with the shard in progress open as a temporary file.
    IDRCELL_TEST_PAUSE_DIR=DIR            where the count is kept (created if missing; use a new one
                                          per run). `DIR/reached` appears once the N samples are written
                                          and a writer waits: the test then sends its SIGKILL.

The count is global to every process and thread that shares DIR, not per process: `idrcell build
--jobs 2` stages two experiments in two worker processes, each writing from a pool of threads, and a
per-process count would stop each worker at its own N, so the total at the kill would depend on which
worker got further. Each write claims a numbered ticket with an exclusive create in DIR (atomic
across processes); tickets 1 to N write, any later one waits, so exactly N new samples are on disk
when `reached` appears, however the writes interleave.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PAUSE_AFTER_VARIABLE = "IDRCELL_TEST_PAUSE_AFTER"
PAUSE_DIR_VARIABLE = "IDRCELL_TEST_PAUSE_DIR"
EVENTS = ("staged", "sharded")
REACHED_FILE = "reached"
_REQUEST = re.compile(r"(staged|sharded):(\d+)", re.ASCII)


@dataclass(frozen=True)
class PausePoint:
    event: str
    count: int
    folder: Path


def requested_pause() -> PausePoint | None:
    """The pause the environment asks for, or None. A malformed request raises a one-line ValueError."""
    text = os.environ.get(PAUSE_AFTER_VARIABLE)
    if not text:
        return None
    return _parse(text, os.environ.get(PAUSE_DIR_VARIABLE))


@functools.cache
def _parse(text: str, folder: str | None) -> PausePoint:
    match = _REQUEST.fullmatch(text)
    if match is None:
        raise ValueError(f"{PAUSE_AFTER_VARIABLE}={text!r}: expected staged:N or sharded:N, N a whole number")
    if not folder:
        raise ValueError(f"{PAUSE_AFTER_VARIABLE} is set but {PAUSE_DIR_VARIABLE} names no folder")
    return PausePoint(match.group(1), int(match.group(2)), Path(folder))


@contextlib.contextmanager
def counted_write(event: str) -> Iterator[None]:
    """Around the writing of one sample: wait forever here if the pause point is already reached."""
    point = requested_pause()
    if point is None or point.event != event:
        yield
        return
    point.folder.mkdir(parents=True, exist_ok=True)
    ticket = _claim_ticket(point)
    if ticket > point.count:
        _touch(point.folder / f"{event}.waiting")
        _mark_if_reached(point)
        while True:  # until the test's SIGKILL
            time.sleep(60)
    yield
    _touch(point.folder / f"{event}-{ticket}.done")  # only once the sample is written
    _mark_if_reached(point)


_next_ticket: dict[Path, int] = {}  # where this process starts looking: tickets only ever grow


def _claim_ticket(point: PausePoint) -> int:
    ticket = _next_ticket.get(point.folder, 1)
    while True:
        try:
            os.close(os.open(point.folder / f"{point.event}-{ticket}.ticket", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            ticket += 1
            continue
        _next_ticket[point.folder] = ticket + 1
        return ticket


def _mark_if_reached(point: PausePoint) -> None:
    """Written by whichever comes last of the N-th write and the first wait. Each checks after its own
    marker is on disk, so at least one of them sees both."""
    names = os.listdir(point.folder)
    done = sum(name.startswith(f"{point.event}-") and name.endswith(".done") for name in names)
    if done == point.count and f"{point.event}.waiting" in names:
        _touch(point.folder / REACHED_FILE)


def _touch(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
