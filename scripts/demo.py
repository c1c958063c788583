"""`make demo`: the main job end to end, offline, stage by stage, ending with pretrained vs random init.

1. start the project's IDR emulator on loopback (the "demo" catalogue: 7 experiments, 1 to 10
   channels, 5 imaging methods; six studies are single-cell crops, four of them localisation
   screens, so that the images differ in what each channel shows, docs/emulator.md);
2. `idrcell build` the matching experiment list, then `idrcell verify` and `idrcell stats`;
3. pretrain a small `chadavit_petit` with DINO on 2 DDP processes (gloo) and export the teacher;
4. write synthetic downstream datasets in the public layouts (CHAMMI included) and run
   `chadavit-bench run-all` for the pretrained model and the same architecture at random init;
5. `chadavit-bench compare`: the verdict (wins, losses, ties, mean difference), printed last and put
   at the top of the report with a note on what the demo is.

No downstream image or label is in the pretraining data: the model learns from the emulator's
images only. Every stage is a real toolkit command run as a subprocess, so its own progress bar
shows; the first failing stage stops the demo with that stage's name and exit code. `--size small`
is the CI-sized run of the same pipeline (tests/e2e): too short to learn anything.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from pretrain_vs_random import IMAGE_SIZE, MODEL_ARGS, TRAIN_SETTINGS
from stages import BIN, StageFailed, run_stage, script_main, settings_args

BENCH_TASKS = "knn,linear,regression,reconstruction,joint,chammi"
# Shown at the top of the report, under the verdict.
REPORT_NOTE = (
    "This is `make demo`: a small ChAda-ViT (depth {depth}, 8 px patches on 32 px images) pretrained "
    "with DINO for minutes on 2 CPU cores, on the IDR emulator's images, and evaluated on small "
    "synthetic datasets in the public layouts. Its numbers show the pipeline and the direction of the "
    "effect, not the paper's scores. The full experiment (40 epochs on 6,000 images, larger "
    "evaluation sets, two seeds) is `scripts/pretrain_vs_random.py`, its results in docs/bench.md "
    '("Does pretraining help?").'
)


@dataclass(frozen=True)
class DemoSize:
    """Knobs that set how long the demo runs; `full` is `make demo`, `small` the CI end-to-end test."""

    images_per_experiment: int
    epochs: int
    steps_per_epoch: int
    batch_size: int  # per DDP process (2 processes)
    local_crops: int
    depth: int
    scale: int  # `chadavit-bench synthetic --scale`: downstream dataset sizes
    seeds: int  # linear-probe and reconstruction seeds
    quick: bool = False  # `run-all --quick`


SIZES = {
    # What scripts/pretrain_vs_random.py taught (docs/bench.md): single cells at 32 px, 8 px
    # patches, a shallow model, the DINO settings of that script, and enough steps.
    "full": DemoSize(
        images_per_experiment=100, epochs=12, steps_per_epoch=50, batch_size=32, local_crops=4,
        depth=4, scale=4, seeds=2,
    ),
    # The same pipeline in about a minute of training.
    "small": DemoSize(
        images_per_experiment=8, epochs=2, steps_per_epoch=4, batch_size=8, local_crops=1,
        depth=2, scale=1, seeds=2, quick=True,
    ),
}  # fmt: skip


def train_settings(size: DemoSize) -> dict[str, object]:
    """pretrain_vs_random's DINO settings, one torch thread per DDP process (2 processes, 2 cores)."""
    return {**TRAIN_SETTINGS, "threads": 1}


def model_args(size: DemoSize) -> dict[str, int]:
    return {**MODEL_ARGS, "depth": size.depth}


@contextmanager
def emulator(seed: int) -> Iterator[str]:
    """Start `idrcell emulator` on a free loopback port and yield its base URL."""
    argv = [str(BIN / "idrcell"), "emulator", "--catalogue", "demo", "--port", "0", "--seed", str(seed)]
    print(f"\n[demo 1/7] start the IDR emulator on loopback\n$ {shlex.join(argv)}", flush=True)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first_line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first_line)
        if not match:
            raise StageFailed(f"stage 'start the IDR emulator' failed: it printed {first_line!r}")
        print(first_line.strip(), flush=True)
        yield match.group(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def demo(out: Path, size: DemoSize, seed: int) -> Path:
    experiments = Path(str(files("idrcell") / "data" / "experiments_demo.csv"))
    experiments_used = out / "experiments_demo.csv"
    out.mkdir(parents=True, exist_ok=True)
    # The list as shipped, with the demo's image count per experiment.
    lines = experiments.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    for row in rows:
        row[3] = str(size.images_per_experiment)
    experiments_used.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    dataset, run, bench_data, report = out / "idrcell", out / "run", out / "bench-data", out / "bench"
    with emulator(seed) as base_url:
        run_stage(
            "2/7",
            "idrcell build (demo experiment list)",
            [
                str(BIN / "idrcell"), "build", "--experiments", str(experiments_used), "--out", str(dataset),
                "--base-url", base_url, "--seed", str(seed), "--jobs", "2", "--concurrency", "8",
                "--timeout", "20",
            ],
        )  # fmt: skip
    run_stage("3/7", "idrcell verify", [str(BIN / "idrcell"), "verify", str(dataset)])
    run_stage("3/7", "idrcell stats", [str(BIN / "idrcell"), "stats", str(dataset)])
    architecture = [arg for k, v in model_args(size).items() for arg in ("--model-arg", f"{k}={v}")]
    run_stage(
        "4/7",
        "chadavit-train: DINO pretraining of a small chadavit_petit on 2 DDP processes (gloo)",
        [
            str(BIN / "chadavit-train"), "--data", str(dataset), "--model", "chadavit_petit",
            *architecture, "--out", str(run), "--epochs", str(size.epochs),
            "--steps-per-epoch", str(size.steps_per_epoch), "--batch-size", str(size.batch_size),
            "--lr", "0.002", "--nproc", "2", "--num-workers", "1", "--seed", str(seed),
            "--resume", "auto", "--local-crops", str(size.local_crops),
            *settings_args(train_settings(size)),
        ],
    )  # fmt: skip
    run_stage(
        "5/7",
        "chadavit-bench synthetic: downstream datasets in their public layouts",
        [
            str(BIN / "chadavit-bench"), "synthetic", "--out", str(bench_data),
            "--image-size", str(IMAGE_SIZE), "--scale", str(size.scale), "--seed", str(seed),
        ],
    )  # fmt: skip
    options = "&".join(f"{k}={v}" for k, v in model_args(size).items())
    run_stage(
        "6/7",
        "chadavit-bench run-all: pretrained vs random init",
        [
            str(BIN / "chadavit-bench"), "run-all", "--data-root", str(bench_data), "--out", str(report),
            "--img-size", str(IMAGE_SIZE),
            "--tasks", BENCH_TASKS, "--seeds", str(size.seeds), *(["--quick"] if size.quick else []),
            "--model", f"{run / 'model'}?label=pretrained",
            "--model", f"random:chadavit_petit?{options}&seed={seed}&label=random-init",
        ],
    )  # fmt: skip
    run_stage(
        "7/7",
        "chadavit-bench compare: pretrained vs random-init, verdict at the top of the report",
        [
            str(BIN / "chadavit-bench"), "compare", str(report), "pretrained", "random-init",
            "--csv", str(out / "comparison.csv"), "--in-report",
            "--note", REPORT_NOTE.format(depth=size.depth),
        ],
    )  # fmt: skip
    return report / "report.html"


def verdict_line(report: Path) -> str:
    """compare's verdict sentence, computed again from the results (the same numbers it printed)."""
    from chadavit_bench.compare import compare_run

    _, outcome = compare_run(report, "pretrained", "random-init")
    return outcome.sentence()


def main(argv: list[str] | None = None) -> int:
    def finished(report: Path, seconds: float) -> str:
        return (
            f"\ndemo finished in {seconds:.0f} s\nreport: {report}\n        {report.with_name('report.md')}"
            f"\n{verdict_line(report.parent)}"
        )

    return script_main(__doc__, "demo-out", SIZES, demo, finished, argv)


if __name__ == "__main__":
    sys.exit(main())
