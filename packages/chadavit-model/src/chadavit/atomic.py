"""Write files whole or not at all, with the permissions a plain `open()` would give.

The data goes to a hidden temporary name in the destination's folder, is flushed to disk, and is
renamed over the final name only when complete (`os.replace` is atomic within a filesystem). The
temporary file is created with `open()`, so the user's umask applies: a model directory written
under umask 022 is readable by colleagues on a shared cluster filesystem (mkstemp's 0600 is not).
The bench package uses this module too; the builder has its own (it must not import torch).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path

_counter = itertools.count()


def temporary_path_for(path: Path) -> Path:
    """A hidden name beside `path`, unique within this process and across processes."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(_counter)}")


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def atomic_write(
    path: str | Path,
    write: Callable[[str], None],
    *,
    before_replace: Callable[[], None] | None = None,
) -> Path:
    """Call `write(temporary_path)` and rename the result to `path`; nothing is left on error.

    `before_replace` runs after the data is on disk and before the rename (the checkpoint writer
    uses it to keep the old file as a previous copy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path_for(path)
    try:
        # Create the file the way open() does (umask applies) before handing its name over.
        temporary.touch()
        mode = stat.S_IMODE(temporary.stat().st_mode)
        write(str(temporary))
        # Some writers replace the file instead of writing into it (safetensors' save_file creates
        # a new one, mode 0600): give the result the permissions open() gave.
        os.chmod(temporary, mode)
        fsync_file(temporary)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
