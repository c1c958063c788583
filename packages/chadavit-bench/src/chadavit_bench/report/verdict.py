"""A head-to-head verdict at the top of the report (`chadavit-bench compare OUT A B --in-report`).

`compare --in-report` records in OUT/comparison.json which two models to set against each other
(and an optional note saying what the run is); every build of the report computes the verdict
again from OUT's results, so a report rebuilt after more runs never shows a stale verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from chadavit.atomic import atomic_write_text
from chadavit_bench.report.document import Block, Heading, Paragraph

COMPARISON_FILE = "comparison.json"


@dataclass(frozen=True)
class ComparisonRequest:
    model: str
    baseline: str
    features: str = "cls"
    note: str = ""  # what the run is, shown under the verdict


def write_request(out: Path, request: ComparisonRequest) -> Path:
    path = out / COMPARISON_FILE
    atomic_write_text(path, json.dumps(asdict(request), indent=2) + "\n")
    return path


def read_request(out: Path) -> ComparisonRequest | None:
    """The recorded comparison, None when there is none; ValueError naming the file when unreadable."""
    path = out / COMPARISON_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = {key: data[key] for key in ("model", "baseline")}
        fields.update({key: data[key] for key in ("features", "note") if key in data})
        if not all(isinstance(value, str) for value in fields.values()):
            raise TypeError("values must be strings")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a comparison written by `compare --in-report` ({error})") from None
    return ComparisonRequest(**fields)


def verdict_blocks(out: Path) -> list[Block]:
    """The verdict sentence and the note, or nothing when no comparison was recorded."""
    from chadavit_bench.compare import compare_run  # compare imports the report package

    try:
        request = read_request(out)
    except ValueError as error:  # a hand-edited file: said in the report, which is still written
        return [Heading("Verdict"), Paragraph(str(error))]
    if request is None:
        return []
    try:
        _, outcome = compare_run(out, request.model, request.baseline, request.features)
        sentence = (
            f"{outcome.sentence()} (`chadavit-bench compare`, {request.features} features; "
            "the table is under Headline scores)."
        )
    except ValueError as error:  # e.g. one of the two models is no longer in the results
        sentence = f"The comparison recorded in {COMPARISON_FILE} cannot be made: {error}"
    return [Heading("Verdict"), Paragraph(sentence), *([Paragraph(request.note)] if request.note else [])]
