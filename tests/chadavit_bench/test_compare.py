"""`chadavit-bench compare`: two models head to head on the headline scores of one results folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.compare import compare_scores, verdict
from chadavit_bench.report import headline_scores
from chadavit_bench.results import Row, summarise, to_frame, write_tables


def _rows(model: str, dataset: str, task: str, metric: str, values: list[float]) -> list[Row]:
    return [Row(model, dataset, task, "cls", 1.0, seed, metric, value) for seed, value in enumerate(values)]


def _results() -> pd.DataFrame:
    rows = []
    # cyclops linear: a clear win beyond the seeds' spread; bbbc048 linear: behind, but within it.
    rows += _rows("pretrained", "cyclops", "linear", "accuracy", [0.80, 0.82, 0.81])
    rows += _rows("random-init", "cyclops", "linear", "accuracy", [0.50, 0.52, 0.51])
    rows += _rows("pretrained", "bbbc048", "linear", "accuracy", [0.40, 0.50, 0.45])
    rows += _rows("random-init", "bbbc048", "linear", "accuracy", [0.44, 0.50, 0.47])
    # nfkb: one seed each, and a tie; a negative R2 is clipped to 0 like the report's scores.
    rows += _rows("pretrained", "nfkb", "regression", "r2", [-0.5])
    rows += _rows("random-init", "nfkb", "regression", "r2", [-0.2])
    # The same probe on mean-token features, where the baseline is ahead.
    rows += [
        Row(m, "cyclops", "linear", "tokens", 1.0, 0, "accuracy", v)
        for m, v in (("pretrained", 0.6), ("random-init", 0.7))
    ]
    # Only one model has this benchmark: it is not compared.
    rows += _rows("pretrained", "bloodmnist", "knn", "accuracy", [0.9])
    return to_frame(rows)


def test_compare_scores_counts_wins_losses_ties_and_seed_spread() -> None:
    table = compare_scores(headline_scores(summarise(_results())), "pretrained", "random-init")
    by_name = table.set_index("benchmark")
    assert list(by_name.index) == ["bbbc048 linear acc.", "cyclops linear acc.", "nfkb R2"]
    assert by_name.loc["cyclops linear acc.", "difference"] == pytest.approx(30.0)
    assert by_name.loc["cyclops linear acc.", "outcome"] == "win"
    assert by_name.loc["cyclops linear acc.", "seed_spread"] == "beyond"
    # Within the seeds' spread the seeds cannot tell the models apart: a tie, not a loss.
    assert by_name.loc["bbbc048 linear acc.", "difference"] == pytest.approx(-2.0)
    assert by_name.loc["bbbc048 linear acc.", "outcome"] == "tie"
    assert by_name.loc["bbbc048 linear acc.", "seed_spread"] == "within"
    assert (by_name.loc["nfkb R2", "outcome"], by_name.loc["nfkb R2", "seed_spread"]) == ("tie", "one seed")
    outcome = verdict(table, "pretrained", "random-init")
    assert (outcome.wins, outcome.losses, outcome.ties) == (1, 0, 2)
    assert outcome.sentence().startswith("pretrained beats random-init on 1 of 3 benchmarks")


def test_compare_cli_prints_the_verdict_writes_csv_and_names_unknown_models(tmp_path: Path) -> None:
    write_tables(tmp_path / "out", _results())
    runner = CliRunner()
    result = runner.invoke(
        app, ["compare", str(tmp_path / "out"), "pretrained", "random-init", "--csv", str(tmp_path / "c.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "pretrained beats random-init on 1 of 3 benchmarks" in " ".join(result.output.split())
    written = pd.read_csv(tmp_path / "c.csv")
    assert set(written["outcome"]) == {"win", "tie"}

    unknown = runner.invoke(app, ["compare", str(tmp_path / "out"), "pretrained", "imagenet"])
    assert unknown.exit_code == 2
    assert "no results for ['imagenet']" in unknown.output
    tokens = runner.invoke(
        app, ["compare", str(tmp_path / "out"), "pretrained", "random-init", "--features", "tokens"]
    )
    assert tokens.exit_code == 0 and "on 0 of 3 benchmarks (1 loss, 2 ties)" in " ".join(
        tokens.output.split()
    )
    bad = runner.invoke(
        app, ["compare", str(tmp_path / "out"), "pretrained", "random-init", "--features", "pixels"]
    )
    assert bad.exit_code == 2 and "--features must be one of" in bad.output
    empty = runner.invoke(app, ["compare", str(tmp_path / "nothing"), "a", "b"])
    assert empty.exit_code == 2 and "no results in" in empty.output


def test_compare_in_report_puts_the_verdict_and_note_first_and_keeps_it_current(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tables(out, _results())
    runner = CliRunner()
    note = "This is `make demo`: a small model."
    result = runner.invoke(
        app, ["compare", str(out), "pretrained", "random-init", "--in-report", "--note", note]
    )
    assert result.exit_code == 0, result.output
    # The answer is the last line a script shows.
    after_report = " ".join(result.output.split("report.html")[-1].split())
    assert after_report.startswith("pretrained beats random-init on 1 of 3 benchmarks")
    assert after_report.endswith("points")
    markdown = (out / "report.md").read_text()
    verdict_at = markdown.index("pretrained beats random-init on 1 of 3 benchmarks")
    assert verdict_at < markdown.index(note) < markdown.index("## Models")
    assert "<code>make demo</code>" in (out / "report.html").read_text()

    # A rebuild after new results computes the verdict again: no stale sentence.
    more = _results()
    more.loc[(more["dataset"] == "nfkb") & (more["model"] == "random-init"), "value"] = 0.9
    write_tables(out, more)
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert "(1 loss, 1 tie)" in (out / "report.md").read_text()

    # A hand-broken comparison.json is named in the report, which is still written.
    (out / "comparison.json").write_text("{not json")
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert "is not a comparison written by" in (out / "report.md").read_text()

    lone_note = runner.invoke(app, ["compare", str(out), "pretrained", "random-init", "--note", "x"])
    assert lone_note.exit_code == 2 and "--note goes with --in-report" in lone_note.output
