"""`make demo`: the main job end to end, offline, stage by stage.

1. start the project's IDR emulator on loopback (the "demo" catalogue: 7 experiments, 1 to 10
   channels, 5 imaging methods);
2. `idrcell build` the matching experiment list, then `idrcell verify` and `idrcell stats`;
3. pretrain `chadavit_petit` with DINO on 2 DDP processes (gloo) and export the teacher backbone;
4. write synthetic downstream datasets in the public layouts and run `chadavit-bench run-all --quick`
   comparing the pretrained model, the same architecture at random init and the one-channel baseline;
5. print where the report is.

Every stage is a real toolkit command run as a subprocess, so its own progress bar shows; the first
failing stage stops the demo with that stage's name and exit code. `--size small` is the CI-sized run
of the same pipeline (tests/e2e).
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

from stages import BIN, StageFailed, run_stage, script_main, settings_args


@dataclass(frozen=True)
class DemoSize:
    """Knobs that set how long the demo runs; `full` is `make demo`, `small` the CI end-to-end test."""

    images_per_experiment: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    crop_size: int
    local_crop_size: int
    local_crops: int
    depth: int
    bench_image_size: int


SIZES = {
    # chadavit_petit as the registry defines it (D 96, depth 12, 2 heads), on 112 px global crops so
    # that two CPU ranks see a few thousand crops in a few minutes.
    "full": DemoSize(24, 6, 20, 8, 112, 48, 2, 12, 64),
    # The same pipeline in about a minute of training: 2 blocks, small crops.
    "small": DemoSize(8, 2, 4, 4, 64, 32, 1, 2, 32),
}


def short_run_settings(size: DemoSize) -> dict[str, object]:
    """Training config fields for a run of minutes, not days.

    The crops and head are smaller than the paper's; the DINO settings follow
    `chadavit.train.testing`: no warm-ups, a constant teacher temperature and a slower center, with
    which the loss of a short run goes down instead of first rising toward log(prototypes). The base
    LR is per 256 images (the paper's 1e-4 would be ~6e-6 at the demo's 16 images per step).
    """
    return {
        "augment.global_crop_size": size.crop_size,
        "augment.local_crop_size": size.local_crop_size,
        "dino.out_dim": 1024,
        "dino.teacher_temp": 0.04,
        "dino.warmup_teacher_temp_epochs": 0,
        "dino.center_momentum": 0.99,
        "optim.base_lr": 0.02,
        "optim.warmup_epochs": 0,
    }


@contextmanager
def emulator(seed: int) -> Iterator[str]:
    """Start `idrcell emulator` on a free loopback port and yield its base URL."""
    argv = [str(BIN / "idrcell"), "emulator", "--catalogue", "demo", "--port", "0", "--seed", str(seed)]
    print(f"\n[demo 1/6] start the IDR emulator on loopback\n$ {shlex.join(argv)}", flush=True)
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
            "2/6",
            "idrcell build (demo experiment list)",
            [
                str(BIN / "idrcell"),
                "build",
                "--experiments",
                str(experiments_used),
                "--out",
                str(dataset),
                "--base-url",
                base_url,
                "--seed",
                str(seed),
                "--jobs",
                "2",
                "--concurrency",
                "8",
                "--timeout",
                "20",
            ],
        )
    run_stage("3/6", "idrcell verify", [str(BIN / "idrcell"), "verify", str(dataset)])
    run_stage("3/6", "idrcell stats", [str(BIN / "idrcell"), "stats", str(dataset)])
    run_stage(
        "4/6",
        "chadavit-train: DINO pretraining of chadavit_petit on 2 DDP processes (gloo)",
        [
            str(BIN / "chadavit-train"),
            "--data",
            str(dataset),
            "--model",
            "chadavit_petit",
            "--out",
            str(run),
            "--epochs",
            str(size.epochs),
            "--steps-per-epoch",
            str(size.steps_per_epoch),
            "--batch-size",
            str(size.batch_size),
            "--nproc",
            "2",
            "--num-workers",
            "1",
            "--seed",
            str(seed),
            "--resume",
            "auto",
            "--local-crops",
            str(size.local_crops),
            "--model-arg",
            f"img_size={size.crop_size}",
            "--model-arg",
            f"depth={size.depth}",
            *settings_args(short_run_settings(size)),
        ],
    )
    run_stage(
        "5/6",
        "chadavit-bench synthetic: downstream datasets in their public layouts",
        [
            str(BIN / "chadavit-bench"),
            "synthetic",
            "--out",
            str(bench_data),
            "--image-size",
            str(size.bench_image_size),
            "--seed",
            str(seed),
        ],
    )
    random_init = (
        f"random:chadavit_petit?img_size={size.crop_size}&depth={size.depth}&seed={seed}&label=random-init"
    )
    run_stage(
        "6/6",
        "chadavit-bench run-all --quick: pretrained vs random init vs one-channel baseline",
        [
            str(BIN / "chadavit-bench"),
            "run-all",
            "--quick",
            "--data-root",
            str(bench_data),
            "--out",
            str(report),
            "--img-size",
            str(size.bench_image_size),
            "--model",
            f"{run / 'model'}?label=pretrained",
            "--model",
            random_init,
            "--model",
            f"onechannel_vit_tiny?depth={size.depth}&seed={seed}&label=one-channel",
        ],
    )
    return report / "report.html"


def main(argv: list[str] | None = None) -> int:
    def finished(report: Path, seconds: float) -> str:
        return (
            f"\ndemo finished in {seconds:.0f} s\nreport: {report}\n        {report.with_name('report.md')}"
        )

    return script_main(__doc__, "demo-out", SIZES, demo, finished, argv)


if __name__ == "__main__":
    sys.exit(main())
