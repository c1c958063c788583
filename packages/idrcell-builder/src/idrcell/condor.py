"""HTCondor submit files, read by HTCondor's own parser (the `htcondor2` bindings, no daemons needed).

`condor_submit FILE name=value ...` parses its `name=value` assignments as if they opened the file;
`SubmitFile` does the same, then expands what a job would run for an item of the queue statement.
`queued_jobs` lists every job the file queues, with the item data HTCondor reads from the list
file; the local executor (executors.py) expands the very same `arguments` for each experiment, so
`idrcell build` runs exactly the commands the pool would.

The bindings' `Submit.itemdata()` returns every line of a `queue ... from FILE` source and leaves the
slice (`from [1:] FILE`, which skips the list's header) to the submitting side, as `condor_submit`
and the schedd apply it when they materialise jobs; `queue_slice` applies it the same way here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from idrcell.experiments import Experiment

SCRAPE_SUBMIT = "scrape.sub"
JOB_WRAPPER = "scrape.sh"
# Files that `idrcell build --executor condor` submits. They live once, in the repository's condor/;
# a wheel ships them as idrcell/data/condor/ (packages/idrcell-builder/hatch_build.py).
PACKAGED_FILES = (SCRAPE_SUBMIT, JOB_WRAPPER)

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SLICE = re.compile(r"\bfrom\s+\[([^\]]*)\]", re.IGNORECASE)


class CondorError(ValueError):
    """A submit file, variable or list that HTCondor cannot use as asked; one sentence for a user."""


def packaged_condor_dir() -> Path:
    """The folder holding scrape.sub and scrape.sh: inside an installed wheel, or, for an editable
    install (which gets no copy), the repository's condor/ beside the source tree."""
    installed = Path(str(resources.files("idrcell").joinpath("data", "condor")))
    repository = Path(__file__).resolve().parents[4] / "condor"  # src/idrcell/condor.py -> repo root
    for folder in (installed, repository):
        if all((folder / name).is_file() for name in PACKAGED_FILES):
            return folder
    raise CondorError(
        f"the HTCondor files {', '.join(PACKAGED_FILES)} are neither in {installed} nor in {repository}; "
        "reinstall idrcell-builder"
    )


def htcondor_bindings() -> Any:
    # Imported on use: `idrcell --help` and the emulator should not pay for loading HTCondor.
    import htcondor2

    return htcondor2


@dataclass(frozen=True)
class SubmitFile:
    """A submit file plus `name=value` assignments given as on the `condor_submit` command line."""

    path: Path
    variables: tuple[tuple[str, str], ...] = ()

    @classmethod
    def load(cls, path: Path | str | None = None, variables: Mapping[str, str] | None = None) -> SubmitFile:
        """`path` defaults to the packaged scrape.sub; variables are checked like condor_submit does."""
        chosen = Path(path) if path is not None else packaged_condor_dir() / SCRAPE_SUBMIT
        if not chosen.is_file():
            raise CondorError(f"{chosen}: the submit file does not exist")
        pairs = tuple((str(k), str(v)) for k, v in (variables or {}).items())
        for name, value in pairs:
            if not _VARIABLE_NAME.fullmatch(name):
                raise CondorError(f"{name!r} is not a submit variable name (letters, digits, '_' and '.')")
            if "\n" in value or "\r" in value:
                raise CondorError(f"the value of submit variable {name!r} spans several lines")
        submit = cls(chosen, pairs)
        submit.parse()  # fail now, with the file's name, rather than at the first expansion
        return submit

    def with_variables(self, variables: Mapping[str, str]) -> SubmitFile:
        merged = dict(self.variables)
        merged.update(variables)
        return SubmitFile.load(self.path, merged)

    def text(self) -> str:
        """The submit description `condor_submit FILE name=value ...` parses."""
        assignments = "".join(f"{name} = {value}\n" for name, value in self.variables)
        return assignments + self.path.read_text(encoding="utf-8")

    def parse(self) -> Any:
        """A fresh `htcondor2.Submit` (fresh, because expanding sets item variables on it)."""
        try:
            return htcondor_bindings().Submit(self.text())
        except ValueError as error:
            raise CondorError(f"{self.path}: HTCondor cannot parse it: {error}") from None

    def expand(
        self,
        names: Iterable[str],
        item: Mapping[str, str] | None = None,
        process: int | None = None,
        cluster: int | None = None,
    ) -> dict[str, str]:
        """The values of submit commands for one job: its item variables, $(Process), $(Cluster) set."""
        description = self.parse()
        for name, value in (item or {}).items():
            description[name] = value
        for name, number in (("Process", process), ("Cluster", cluster)):
            if number is not None:
                description[name] = str(number)
        expanded = {}
        for name in names:
            try:
                expanded[name] = description.expand(name)
            except KeyError:
                raise CondorError(f"{self.path} does not define {name!r}") from None
        return expanded


@dataclass(frozen=True)
class CondorJob:
    """One job a submit file queues: its item data and the command it runs."""

    process: int
    item: Mapping[str, str]
    executable: str
    arguments: tuple[str, ...]

    @property
    def command(self) -> list[str]:
        return [self.executable, *self.arguments]


def arguments_to_argv(text: str) -> list[str]:
    """Split a submit file's expanded `arguments` into argv, by the rules of `condor_submit(1)`.

    New syntax (the value is wrapped in double quotes): whitespace separates arguments, single quotes
    keep whitespace inside one, `''` inside single quotes is a literal quote and `""` a literal double
    quote. Old syntax: whitespace separates arguments and `\\"` is a literal double quote.
    """
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"') and len(text) >= 2):
        return [part.replace('\\"', '"') for part in text.split()]
    body = text[1:-1].replace('""', '"')
    argv: list[str] = []
    current: list[str] = []
    started = quoted = False
    index = 0
    while index < len(body):
        char = body[index]
        if quoted:
            if char == "'" and body[index + 1 : index + 2] == "'":
                current.append("'")
                index += 1
            elif char == "'":
                quoted = False
            else:
                current.append(char)
        elif char == "'":
            quoted = started = True
        elif char in " \t":
            if started:
                argv.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        index += 1
    if quoted:
        raise CondorError(f"unbalanced single quote in arguments {text}")
    if started:
        argv.append("".join(current))
    return argv


def queue_slice(queue_args: str) -> slice:
    """The Python-style slice of a `queue ... from [start:stop:step] SOURCE` statement (all if none)."""
    match = _SLICE.search(queue_args)
    if match is None:
        return slice(None)
    parts = [part.strip() for part in match.group(1).split(":")]
    if len(parts) > 3:
        raise CondorError(f"queue statement slice [{match.group(1)}] has more than three parts")
    try:
        numbers = [int(part) if part else None for part in parts]
    except ValueError:
        raise CondorError(f"queue statement slice [{match.group(1)}] is not made of integers") from None
    return slice(*numbers)


def expand_job(submit: SubmitFile, item: Mapping[str, str], process: int) -> CondorJob:
    """The command the job for `item` runs (executable and argv), expanded by HTCondor's parser."""
    values = submit.expand(("executable", "arguments"), item)
    return CondorJob(process, dict(item), values["executable"], tuple(arguments_to_argv(values["arguments"])))


def queued_jobs(submit: SubmitFile) -> list[CondorJob]:
    """Every job the file's queue statement creates, with the item data HTCondor reads for it."""
    description = submit.parse()
    try:
        items = description.itemdata()
    except ValueError as error:
        # The bindings fail this way on a blank line in the item file (an empty item).
        raise CondorError(
            f"HTCondor cannot read the items of `queue {description.getQArgs()}`: {error} "
            "(is there a blank line in the list?)"
        ) from None
    rows = list(items) if items is not None else [{}]
    chosen = rows[queue_slice(description.getQArgs())]
    return [
        expand_job(submit, item if isinstance(item, dict) else {"Item": item}, process)
        for process, item in enumerate(chosen)
    ]


def check_jobs_match_list(
    jobs: Sequence[CondorJob], experiments: Sequence[Experiment], list_path: Path
) -> None:
    """Refuse a list that HTCondor's item reader would split differently from idrcell's CSV reader.

    HTCondor splits each line at commas and spaces, does not skip comment lines and knows no CSV
    quoting, so a list for the pool needs `study,container` as its first two columns and plain rows.
    """
    hint = (
        "a list for HTCondor needs study,container as its first two columns, no comment or blank lines "
        "and no quoted or space-padded fields"
    )
    for index, job in enumerate(jobs):
        read = (job.item.get("study", ""), job.item.get("container", ""))
        if index >= len(experiments):
            raise CondorError(
                f"{list_path}: HTCondor would queue a job for {read[0]!r}/{read[1]!r} that is not an "
                f"experiment row; {hint}"
            )
        expected = experiments[index]
        if read != (expected.study, expected.container):
            raise CondorError(
                f"{list_path}: HTCondor reads data row {index + 1} as study {read[0]!r}, container "
                f"{read[1]!r}, not {expected.study}/{expected.container}; {hint}"
            )
    if len(jobs) < len(experiments):
        missing = experiments[len(jobs)]
        raise CondorError(f"{list_path}: HTCondor queues no job for {missing.omero_name}; {hint}")
