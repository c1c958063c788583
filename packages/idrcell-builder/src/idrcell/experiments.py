"""The experiment list: a CSV naming which IDR screens and projects to sample, and how many images.

Header `study,container,id,n_images,channels,z,t`; only `study` and `container` are required.
Validation collects every problem with its line number before giving up, so a user fixes a list in
one pass, and nothing is written when a list is invalid.
"""

from __future__ import annotations

import csv
import hashlib
import io
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from idrcell.naming import experiment_name

# IDRCell100k sampled 1,300 images per experiment (ChAda-ViT paper, Sec. 4.1: 79 experiments, ~100k images).
DEFAULT_N_IMAGES = 1300
COLUMNS = ("study", "container", "id", "n_images", "channels", "z", "t")
REQUIRED_COLUMNS = ("study", "container")
# Optional columns written only when some row uses them, so older lists and outputs keep their bytes.
# `zarr`: where the experiment's OME-Zarr copies are, for studies whose naming breaks the usual
# rules (docs/builder.md; placeholders as in data/zarr_layouts.csv).
EXTRA_COLUMNS = ("zarr",)
ZARR_PLACEHOLDERS = ("study_id", "letter", "plate_id", "plate_name", "image_id")

ContainerKind = Literal["screen", "project"]


class ExperimentListError(ValueError):
    """An experiment list with one or more problems; `problems` holds one sentence per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in {source}:\n" + "\n".join(problems))


@dataclass(frozen=True)
class Experiment:
    """One row of the list: an IDR screen (container `screen*`) or project (`experiment*`)."""

    study: str
    container: str
    id: int | None = None
    n_images: int = DEFAULT_N_IMAGES
    channels: tuple[int, ...] | None = None  # 1-based source channel indices to keep, in this order
    z: int | None = None  # None: the image's default plane (rdefs defaultZ)
    t: int | None = None
    zarr: str | None = None  # a store template, relative to --zarr-base-url or an absolute URL

    @property
    def kind(self) -> ContainerKind:
        return container_kind(self.container)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """Safe folder name of this experiment's staging directory."""
        return experiment_name(self.study, self.container)

    @property
    def omero_name(self) -> str:
        """The Screen or Project name IDR gives this container, `study/container`."""
        return f"{self.study}/{self.container}"

    def to_row(self) -> dict[str, str]:
        values = asdict(self)
        row = {column: "" if values[column] is None else str(values[column]) for column in COLUMNS}
        row["channels"] = ";".join(str(c) for c in self.channels) if self.channels else ""
        if self.zarr:
            row["zarr"] = self.zarr
        return row


def container_kind(container: str) -> ContainerKind | None:
    lowered = container.lower()
    if lowered.startswith("screen"):
        return "screen"
    if lowered.startswith("experiment"):
        return "project"
    return None


def experiment_seed(global_seed: int, study: str, container: str) -> int:
    """Sampling seed of one experiment, from the global seed and its name, never from its row number,
    so a stage job run alone samples exactly what the same experiment samples inside a full build."""
    digest = hashlib.sha256(f"{global_seed}\0{study}\0{container}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _parse_int(text: str, column: str, line: int, minimum: int, problems: list[str]) -> int | None:
    try:
        value = int(text)
    except ValueError:
        problems.append(f"line {line}: column {column!r} must be an integer, got {text!r}")
        return None
    if value < minimum:
        problems.append(f"line {line}: column {column!r} must be at least {minimum}, got {value}")
        return None
    return value


def _parse_channels(text: str, line: int, problems: list[str]) -> tuple[int, ...] | None:
    indices: list[int] = []
    for part in text.split(";"):
        value = _parse_int(part.strip(), "channels", line, 1, problems)
        if value is None:
            return None
        indices.append(value)
    if len(set(indices)) != len(indices):
        problems.append(f"line {line}: column 'channels' repeats a channel index in {text!r}")
        return None
    return tuple(indices)


def parse_experiments(text: str, source: str = "<experiment list>") -> list[Experiment]:
    """Parse and validate a list; raise ExperimentListError naming every problem with its line."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    header_line = 0
    experiments: list[Experiment] = []
    seen: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            header_line = line
            for column in REQUIRED_COLUMNS:
                if column not in header:
                    problems.append(f"line {line}: missing column {column!r} in the header")
            for column in header:
                if column not in COLUMNS + EXTRA_COLUMNS:
                    expected = ", ".join(COLUMNS + EXTRA_COLUMNS)
                    problems.append(f"line {line}: unknown column {column!r} (expected some of {expected})")
            duplicates = sorted({c for c in header if header.count(c) > 1})
            for column in duplicates:
                problems.append(f"line {line}: column {column!r} appears more than once in the header")
            if problems:
                break
            continue
        if len(row) != len(header):
            problems.append(f"line {line}: expected {len(header)} fields, got {len(row)}")
            continue
        cells = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        identity = (cells.get("study", ""), cells.get("container", ""))
        if all(identity) and identity in seen:
            problems.append(
                f"line {line}: duplicate row for {identity[0]}/{identity[1]} "
                f"(first given on line {seen[identity]})"
            )
            continue
        if all(identity):
            seen[identity] = line
        experiment = _parse_row(cells, line, problems)
        if experiment is not None:
            experiments.append(experiment)
    if header is None:
        problems.append("line 1: the list is empty; expected a header with columns study,container,...")
    elif not experiments and not problems:
        problems.append(f"line {header_line}: the list has a header but no experiments")
    if problems:
        raise ExperimentListError(source, problems)
    return experiments


def _parse_zarr_template(text: str, line: int, problems: list[str]) -> str | None:
    """A `zarr` cell: a store path or URL whose `{...}` placeholders are ones the resolver fills."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:
        problems.append(f"line {line}: column 'zarr' is not a valid template ({error}): {text!r}")
        return None
    unknown = sorted(names - set(ZARR_PLACEHOLDERS))
    if unknown:
        problems.append(
            f"line {line}: column 'zarr' has unknown placeholder {{{unknown[0]}}} "
            f"(known: {', '.join('{' + p + '}' for p in ZARR_PLACEHOLDERS)})"
        )
        return None
    return text


def _parse_row(cells: dict[str, str], line: int, problems: list[str]) -> Experiment | None:
    before = len(problems)
    study, container = cells.get("study", ""), cells.get("container", "")
    if not study:
        problems.append(f"line {line}: column 'study' is empty")
    if not container:
        problems.append(f"line {line}: column 'container' is empty")
    elif container_kind(container) is None:
        problems.append(
            f"line {line}: unknown container kind {container!r} "
            "(expected screen* for an OMERO Screen or experiment* for a Project)"
        )
    fields: dict[str, object] = {}
    for column, minimum in (("id", 1), ("n_images", 1), ("z", 0), ("t", 0)):
        if cells.get(column):
            fields[column] = _parse_int(cells[column], column, line, minimum, problems)
    if cells.get("channels"):
        fields["channels"] = _parse_channels(cells["channels"], line, problems)
    if cells.get("zarr"):
        fields["zarr"] = _parse_zarr_template(cells["zarr"], line, problems)
    if len(problems) > before:
        return None
    return Experiment(study=study, container=container, **fields)  # type: ignore[arg-type]


def load_experiments(path: Path | str) -> list[Experiment]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ExperimentListError(str(path), ["the file does not exist"]) from None
    except IsADirectoryError:
        raise ExperimentListError(str(path), ["it is a directory, not a CSV file"]) from None
    except OSError as error:  # unreadable: permissions, a broken link, ...
        raise ExperimentListError(str(path), [f"the file cannot be read ({error.strerror})"]) from None
    except UnicodeDecodeError:
        raise ExperimentListError(str(path), ["the file is not UTF-8 text"]) from None
    return parse_experiments(text, source=str(path))


def find_experiment(experiments: list[Experiment], study: str, container: str) -> Experiment:
    for experiment in experiments:
        if experiment.study == study and experiment.container == container:
            return experiment
    raise KeyError(f"{study}/{container} is not in the experiment list")


def experiments_to_csv(experiments: list[Experiment]) -> str:
    buffer = io.StringIO()
    extra = tuple(c for c in EXTRA_COLUMNS if any(c in e.to_row() for e in experiments))
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS + extra, restval="", lineterminator="\n")
    writer.writeheader()
    for experiment in experiments:
        writer.writerow(experiment.to_row())
    return buffer.getvalue()
