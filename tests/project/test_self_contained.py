"""The repository stands on its own: no tracked file points into the machine it was written on, or
cites a document that is not in the repository.

Facts taken from notes outside the repository belong in docs/ in the project's own words; a comment
that says "see the notes in /some/folder/of/mine" helps nobody who clones the project.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Folders every machine has; a path under them names no particular machine (the hostile test data
# legitimately aims at /tmp/escape), and a clone may well live in one of them.
SYSTEM_FOLDERS = {Path("/"), Path("/tmp"), Path("/var/tmp"), Path(tempfile.gettempdir())}
HOME_FOLDER = re.compile(r"(?<![\w.])/(?:root|home/[^/\s\"'`]+)/")
SHARED_NOTES = "../" + "shared/"  # split so that this file does not match itself

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
# A file name ending in .md, with or without folders before it (`docs/format.md`, `README.md`).
MARKDOWN_NAME = re.compile(r"(?<![\w./-])((?:\.{1,2}/)*(?:[\w.-]+/)*[\w-][\w.-]*\.md)(?![\w-])")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
# Files the tools write, mentioned as outputs rather than cited as documents.
WRITTEN_BY_THE_TOOLS = {"report.md"}  # chadavit-bench run/report: OUT/report.md


@cache
def tracked_files() -> tuple[str, ...]:
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True)
    if listing.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return tuple(name for name in listing.stdout.decode().split("\0") if name)


def text_files(suffixes: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(path, text) of every tracked text file (binary files are left out)."""
    found = []
    for name in tracked_files():
        path = ROOT / name
        if (suffixes and not name.endswith(suffixes)) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            found.append((name, data.decode("utf-8", "replace")))
    return found


def machine_paths() -> list[str]:
    """Absolute paths that name this machine: the checkout, and the folder that holds it."""
    paths = [str(ROOT)]
    if ROOT.parent not in SYSTEM_FOLDERS:
        paths.append(f"{ROOT.parent}/")
    return paths


def test_no_tracked_file_names_a_folder_of_the_machine_it_was_written_on() -> None:
    needles = machine_paths()
    found = []
    for name, text in text_files():
        for line_number, line in enumerate(text.splitlines(), start=1):
            hits = [needle for needle in needles if needle in line]
            hits += HOME_FOLDER.findall(line)
            hits += [SHARED_NOTES] if SHARED_NOTES in line else []
            found += [f"{name}:{line_number}: {hit}" for hit in hits]
    assert found == [], "machine-specific paths in tracked files:\n" + "\n".join(found)


def cited_file_exists(target: str, citing: Path) -> bool:
    """Whether a cited .md file is in the repository: a bare name anywhere, a path from the
    repository root or from the citing file's folder, or the tail of a tracked path."""
    if Path(target).name in WRITTEN_BY_THE_TOOLS:
        return True
    if "/" not in target:
        return any(Path(name).name == target for name in tracked_files())
    bare = target.lstrip("./") if not target.startswith("..") else target
    return (
        (ROOT / target).is_file()
        or (citing.parent / target).is_file()
        or any(name.endswith("/" + bare) for name in tracked_files())
    )


def test_every_cited_markdown_file_is_in_the_repository() -> None:
    missing = []
    for name, text in text_files((".py", ".md")):
        citing = ROOT / name
        for line_number, line in enumerate(text.splitlines(), start=1):
            without_urls = URL.sub(" ", line)  # a document on the web is not the repository's
            for target in MARKDOWN_NAME.findall(without_urls):
                if not cited_file_exists(target, citing):
                    missing.append(f"{name}:{line_number}: {target}")
    assert missing == [], "cited .md files that are not in the repository:\n" + "\n".join(missing)


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for name, text in text_files((".md",)):
        for line_number, line in enumerate(text.splitlines(), start=1):
            for target in MARKDOWN_LINK.findall(line):
                if "://" in target or target.startswith(("#", "mailto:")):
                    continue
                relative = target.split("#")[0]
                if relative and not ((ROOT / name).parent / relative).exists():
                    broken.append(f"{name}:{line_number}: {target}")
    assert broken == [], "relative links that lead nowhere:\n" + "\n".join(broken)


def test_the_exempted_output_names_are_still_written_by_the_tools() -> None:
    # Keeps WRITTEN_BY_THE_TOOLS honest: an exemption whose writer is gone must go too.
    sources = [text for name, text in text_files((".py",)) if name.startswith("packages/")]
    for output in WRITTEN_BY_THE_TOOLS:
        assert any(f'"{output}"' in text for text in sources), output
