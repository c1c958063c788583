"""The experiment list: defaults, every validation problem with its line, nothing written when invalid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.experiments import (
    DEFAULT_N_IMAGES,
    Experiment,
    ExperimentListError,
    experiment_seed,
    experiments_to_csv,
    parse_experiments,
)


def test_a_valid_list_gets_defaults_and_container_kinds() -> None:
    text = (
        "study,container,id,n_images,channels,z,t\n"
        "idr0002-heriche-condensation,screenA,102,,,,\n"
        "# a comment line\n"
        "\n"
        "idr0040-aymoz-singlecell,experimentA,,50,2;1;3,1,0\n"
    )
    first, second = parse_experiments(text)
    assert first == Experiment("idr0002-heriche-condensation", "screenA", id=102)
    assert first.n_images == DEFAULT_N_IMAGES and first.kind == "screen"
    assert second.kind == "project" and second.id is None
    assert second.channels == (2, 1, 3) and (second.z, second.t, second.n_images) == (1, 0, 50)
    assert parse_experiments(experiments_to_csv([first, second])) == [first, second]


def test_only_study_and_container_are_required() -> None:
    (row,) = parse_experiments("container,study\nscreenB,idr0001-graml-sysgro\n")
    assert (row.study, row.container, row.n_images) == ("idr0001-graml-sysgro", "screenB", 1300)


def test_every_problem_is_reported_with_its_line_number() -> None:
    text = (
        "study,container,id,n_images,channels\n"  # line 1
        "idr0001-a,screenA,3,10,\n"  # line 2: fine
        "idr0001-a,screenA,3,10,\n"  # line 3: duplicate of line 2
        "idr0002-b,plateA,,10,\n"  # line 4: unknown container kind
        "idr0003-c,screenA,abc,10,\n"  # line 5: bad integer id
        "idr0004-d,screenA,,0,\n"  # line 6: n_images below 1
        "idr0005-e,experimentA,,10,1;x\n"  # line 7: bad channel index
        "idr0006-f,experimentA,,10,2;2\n"  # line 8: repeated channel
        ",screenA,,10,\n"  # line 9: empty study
        "idr0007-g,screenA,,10\n"  # line 10: wrong number of fields
    )
    with pytest.raises(ExperimentListError) as caught:
        parse_experiments(text, source="list.csv")
    problems = caught.value.problems
    expected = {
        3: "duplicate row for idr0001-a/screenA (first given on line 2)",
        4: "unknown container kind 'plateA'",
        5: "column 'id' must be an integer, got 'abc'",
        6: "column 'n_images' must be at least 1, got 0",
        7: "column 'channels' must be an integer, got 'x'",
        8: "repeats a channel index",
        9: "column 'study' is empty",
        10: "expected 5 fields, got 4",
    }
    assert len(problems) == len(expected), problems
    for line, fragment in expected.items():
        assert any(p.startswith(f"line {line}:") and fragment in p for p in problems), (line, problems)
    assert str(caught.value).startswith("8 problems in list.csv")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the list is empty"),
        ("study,id\nidr0001-a,3\n", "missing column 'container'"),
        ("study,container,plates\nidr0001-a,screenA,3\n", "unknown column 'plates'"),
        ("study,container\n", "has a header but no experiments"),
    ],
)
def test_header_problems(text: str, fragment: str) -> None:
    with pytest.raises(ExperimentListError) as caught:
        parse_experiments(text)
    assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


def test_the_experiment_seed_depends_on_the_experiment_not_its_row() -> None:
    assert experiment_seed(0, "idr0001-a", "screenA") == experiment_seed(0, "idr0001-a", "screenA")
    assert experiment_seed(0, "idr0001-a", "screenA") != experiment_seed(1, "idr0001-a", "screenA")
    assert experiment_seed(0, "idr0001-a", "screenA") != experiment_seed(0, "idr0001-a", "screenB")


def test_cli_check_lists_problems_and_build_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "list.csv"
    bad.write_text("study,container\nidr0001-a,wellA\nidr0001-a,wellA\n", encoding="utf-8")
    runner = CliRunner()
    checked = runner.invoke(app, ["experiments", "check", str(bad)])
    assert checked.exit_code == 2  # the list named on the command line is unusable
    assert "line 2: unknown container kind 'wellA'" in checked.output
    assert "line 3: duplicate row" in checked.output
    out = tmp_path / "out"
    built = runner.invoke(app, ["build", "--experiments", str(bad), "--out", str(out)])
    assert built.exit_code == 2 and not out.exists()
    good = tmp_path / "good.csv"
    good.write_text("study,container,n_images\nidr0001-a,screenA,5\n", encoding="utf-8")
    listed = runner.invoke(app, ["experiments", "check", str(good)])
    assert listed.exit_code == 0 and "idr0001-a" in listed.output


def test_the_paper_list_prints_79_valid_experiments() -> None:
    # `experiments default` prints only those of them with an OME-Zarr copy (test_default_list.py)
    result = CliRunner().invoke(app, ["experiments", "paper"])
    assert result.exit_code == 0
    experiments = parse_experiments(result.output)
    assert len(experiments) == 79
    assert all(e.n_images == DEFAULT_N_IMAGES and e.id is not None for e in experiments)
