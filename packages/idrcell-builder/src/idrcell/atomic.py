"""Write files so that a reader (or a resumed build) never sees half of one.

Every file goes to a hidden temporary name in the same directory and is renamed over its final
name only when complete and flushed; `os.replace` is atomic within a filesystem. A process killed
mid-write leaves at most a `.NAME.tmp-PID-N` file, which `remove_stale_temps` deletes on the next run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_counter = itertools.count()
_TEMP_PATTERN = re.compile(r"^\..+\.tmp-\d+-\d+$")


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(_counter)}")


@contextlib.contextmanager
def atomic_open(path: Path | str) -> Iterator[BinaryIO]:
    """Open `path` for binary writing; the file appears under its name only if the block succeeds."""
    path = Path(path)
    temp = temp_path_for(path)
    try:
        with open(temp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(directory: Path) -> int:
    """Delete temporary files left by killed writers in `directory`; return how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        if _TEMP_PATTERN.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed
