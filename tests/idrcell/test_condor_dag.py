"""condor/build.dag: its shape, and a dataset built through its nodes exactly as expanded by HTCondor's
parser (scrape jobs run by the local executor; merge and verify run through condor/scrape.sh, as on a
slot), which must equal `idrcell build` byte for byte."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.main import get_command

from idrcell.cli import app
from idrcell.condor import SubmitFile, expand_job, queued_jobs
from idrcell.emulator import EmulatorServer
from idrcell.executors import job_from_command, run_local
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig

REPO = Path(__file__).resolve().parents[2]
IDRCELL = Path(sys.executable).parent / "idrcell"


@dataclass
class Dag:
    nodes: dict[str, Path] = field(default_factory=dict)  # JOB name -> submit file
    edges: set[tuple[str, str]] = field(default_factory=set)  # (parent, child)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)  # VARS node (or ALL_NODES)
    retries: dict[str, int] = field(default_factory=dict)

    def order(self) -> list[str]:
        """The nodes in an order DAGMan could run them (parents first)."""
        done: list[str] = []
        while len(done) < len(self.nodes):
            ready = [
                n for n in self.nodes if n not in done and all(p in done for p, c in self.edges if c == n)
            ]
            assert ready, f"cycle in {self.edges}"
            done.extend(sorted(ready))
        return done

    def variables_of(self, node: str) -> dict[str, str]:
        return {**self.variables.get("ALL_NODES", {}), **self.variables.get(node, {})}


def read_dag(path: Path, root: Path) -> Dag:
    """The JOB, VARS, PARENT/CHILD and RETRY lines of a DAG (paths relative to `root`, where
    condor_submit_dag runs); any other command fails, so this reader grows with the file."""
    dag = Dag()
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, *words = shlex.split(line)
        if command == "JOB":
            dag.nodes[words[0]] = root / words[1]
        elif command == "VARS":
            dag.variables[words[0]] = dict(word.split("=", 1) for word in words[1:])
        elif command == "PARENT":
            split = words.index("CHILD")
            dag.edges |= {(p, c) for p in words[:split] for c in words[split + 1 :]}
        elif command == "RETRY":
            dag.retries[words[0]] = int(words[1])
        else:
            raise AssertionError(f"{path}: unexpected DAG command {line!r}")
    return dag


@pytest.fixture(scope="module")
def dag() -> Dag:
    return read_dag(REPO / "condor" / "build.dag", REPO)


def test_build_dag_scrapes_then_merges_then_verifies(dag: Dag, tmp_path: Path) -> None:
    assert dag.nodes == {name: REPO / "condor" / f"{name}.sub" for name in ("scrape", "merge", "verify")}
    assert dag.edges == {("scrape", "merge"), ("merge", "verify")}
    assert dag.order() == ["scrape", "merge", "verify"]
    assert dag.retries.get("scrape", 0) >= 1
    variables = dag.variables_of("scrape")
    assert {"list", "out", "seed"} <= set(variables)
    cli = get_command(app)
    scrape = expand_job(SubmitFile.load(dag.nodes["scrape"], variables), {"study": "s", "container": "c"}, 0)
    staged = cli.commands["stage"].make_context("stage", list(scrape.arguments[1:])).params
    merge = expand_job(SubmitFile.load(dag.nodes["merge"], dag.variables_of("merge")), {}, 0)
    merged = cli.commands["merge"].make_context("merge", list(merge.arguments[1:])).params
    # Every node sees the same list, output folder and seed: the merge combines what the jobs staged.
    assert merge.arguments[0] == "merge" and scrape.arguments[0] == "stage"
    assert str(staged["experiments"]) == str(merged["experiments"]) == variables["list"]
    assert str(staged["out"]) == str(merged["out"]) == variables["out"]
    assert staged["seed"] == merged["seed"] == int(variables["seed"])
    verify = expand_job(SubmitFile.load(dag.nodes["verify"], dag.variables_of("verify")), {}, 0)
    assert list(verify.arguments) == ["verify", variables["out"]]
    for node in ("merge", "verify"):  # on the access point, where OUT is whole in both layouts
        submit = SubmitFile.load(dag.nodes[node], dag.variables_of(node))
        assert submit.expand(("universe",))["universe"] == "local"
    for job in (scrape, merge, verify):
        assert job.executable == "condor/scrape.sh"


@pytest.mark.slow
def test_a_dataset_built_through_the_dags_jobs_equals_idrcell_build(
    dag: Dag,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_build: Path,
    tiny_list: Path,
    tiny_emulator: EmulatorServer,
    snapshot,
) -> None:
    monkeypatch.chdir(tmp_path)  # the submit directory, where the DAG's relative list and out live
    shutil.copyfile(tiny_list, tmp_path / dag.variables_of("scrape")["list"])
    site = {"base_url": tiny_emulator.base_url, "condor_dir": str(REPO / "condor")}
    slot_env = {**os.environ, "IDRCELL_BIN": str(IDRCELL), "COLUMNS": "200"}
    outputs = {}
    for node in dag.order():
        submit = SubmitFile.load(dag.nodes[node], {**dag.variables_of(node), **site})
        jobs = queued_jobs(submit)
        if node == "scrape":
            experiments = load_experiments(dag.variables_of(node)["list"])
            assert len(jobs) == len(experiments) == 3
            stage_jobs = [job_from_command(job.arguments, experiments, StageConfig()) for job in jobs]
            results = run_local(stage_jobs, processes=2)
            assert all(result.complete for result in results), [result.error for result in results]
            continue
        (job,) = jobs
        done = subprocess.run(
            job.command, cwd=tmp_path, env=slot_env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[node] = done.stdout
    assert "OK: 60 samples" in outputs["verify"]
    assert snapshot(tmp_path / dag.variables_of("merge")["out"]) == snapshot(clean_build)
