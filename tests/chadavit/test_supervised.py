"""`--objective supervised`: ProxyNCA++ (or cross-entropy) on the samples' `label`, through the same
loop as DINO: two gloo ranks, mixed channel counts, a bitwise resume, an export that loads."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import chadavit
from chadavit.data.shards import DataError
from chadavit.data.testing import sample_members
from chadavit.ssl.supervised import ProxyHead, read_labels
from chadavit.train.checkpoint import read_checkpoint
from chadavit.train.loop import TrainingError, train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import tiny_config

CLI = str(Path(sys.executable).parent / "chadavit-train")


def textured(rng: np.random.Generator, n_channels: int, label: int, size: int = 64) -> np.ndarray:
    """Class 0: smooth blobs; class 1: fine grain. Both survive crops, flips and intensity jitter."""
    if label == 0:
        coarse = rng.random((n_channels, size // 16, size // 16))
        image = np.kron(coarse, np.ones((16, 16)))
    else:
        image = rng.random((n_channels, size, size))
    return (image * 255).astype(np.uint8)


def write_labelled_shards(
    data_dir: Path, n_images: int, per_shard: int, seed: int = 0, with_label: bool = True
) -> None:
    """Shards of labelled images in three channel counts (like CHAMMI's 3, 4 and 5)."""
    rng = np.random.default_rng(seed)
    (data_dir / "shards").mkdir(parents=True)
    for shard_index, start in enumerate(range(0, n_images, per_shard)):
        with tarfile.open(
            data_dir / "shards" / f"idrcell-{shard_index:06d}.tar", "w", format=tarfile.USTAR_FORMAT
        ) as tar:
            for i in range(start, min(start + per_shard, n_images)):
                label = i % 2
                members = sample_members(f"set_images_{i}", textured(rng, 3 + i % 3, label))
                meta = json.loads(members[0][1])
                if with_label:
                    meta["label"] = ["smooth", "grainy"][label]
                members[0] = (members[0][0], json.dumps(meta).encode())
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_proxynca_logits_are_the_reference_squared_distances_up_to_a_constant() -> None:
    # channel_adaptive_models' proxy_loss: CE over -||s x/|x| - s p/|p|||^2 with s = sqrt(1/T).
    torch.manual_seed(0)
    head = ProxyHead(16, 5, temperature=0.11111)
    embeddings, labels = torch.randn(7, 16), torch.randint(0, 5, (7,))
    scale = math.sqrt(1 / 0.11111)
    distances = (
        torch.cdist(scale * F.normalize(embeddings, dim=-1), scale * F.normalize(head.proxies, dim=-1)) ** 2
    )
    reference = F.cross_entropy(-distances, labels)
    assert torch.allclose(F.cross_entropy(head(embeddings), labels), reference, atol=1e-5)
    assert head.proxies.std().item() == pytest.approx(1 / 8, rel=0.3)  # randn / 8, as the reference


def test_samples_without_a_label_are_refused_naming_one(tmp_path: Path) -> None:
    write_labelled_shards(tmp_path / "data", 8, 8, with_label=False)
    with pytest.raises(
        DataError, match=r"8 samples of .* have no `label` .*first: idrcell-000000.tar:set_images_"
    ):
        read_labels(tmp_path / "data")
    with pytest.raises(TrainingError, match="have no `label`"):
        train(tiny_config(tmp_path / "data", tmp_path / "run", objective="supervised", epochs=1))


@pytest.mark.slow
def test_two_ranks_learn_the_labels_resume_bitwise_and_export_a_loadable_backbone(tmp_path: Path) -> None:
    write_labelled_shards(tmp_path / "data", 60, 15)
    assert sorted(set(read_labels(tmp_path / "data").values())) == ["grainy", "smooth"]
    settings = dict(objective="supervised", nproc=2, epochs=3, sync_check_every=1, save_every=5,
                    augment__n_local_crops=0, optim__base_lr=0.01)  # fmt: skip
    reference = tmp_path / "reference"
    train(tiny_config(tmp_path / "data", reference, **settings))
    metrics = read_metrics(reference)
    losses = [m["loss"] for m in metrics]
    assert [m["step"] for m in metrics] == list(range(18))
    assert all(m["weights_in_sync"] is True for m in metrics)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, f"the loss did not go down: {losses}"

    # Resume from the previous checkpoint (step 15, mid-epoch) in a fresh run folder.
    previous = read_checkpoint(reference / "checkpoints" / "prev.pt")
    assert (previous["step"], previous["step_in_epoch"]) == (15, 3)
    assert previous["classes"] == ["grainy", "smooth"]
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(reference / "checkpoints" / "prev.pt", run / "checkpoints" / "last.pt")
    train(tiny_config(tmp_path / "data", run, resume="auto", **settings))
    assert [m["loss"] for m in read_metrics(run)] == losses[15:]  # bit-identical, step for step
    resumed = chadavit.from_pretrained(run / "model").state_dict()
    uninterrupted = chadavit.from_pretrained(reference / "model").state_dict()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)

    # The export is the trained backbone; `export --network student` writes the same from a checkpoint.
    student = read_checkpoint(reference / "checkpoints" / "last.pt")["student"]
    assert all(torch.equal(t, student[f"backbone.{name}"]) for name, t in uninterrupted.items())
    export = [CLI, "export", str(reference / "checkpoints" / "last.pt"), "--network", "student"]
    result = subprocess.run([*export, "--out", str(tmp_path / "exported")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = chadavit.from_pretrained(tmp_path / "exported")
    images = [torch.rand(3, 64, 64), torch.rand(5, 64, 64)]
    assert model(chadavit.ChannelBatch.from_images(images)).shape == (2, 32)


def test_cross_entropy_trains_through_the_cli(tmp_path: Path) -> None:
    from chadavit.train.testing import tiny_cli_args

    write_labelled_shards(tmp_path / "data", 16, 16)
    args = [CLI, *tiny_cli_args(tmp_path / "data", tmp_path / "run", epochs=1), "--objective", "supervised"]
    args += ["--set", "supervised.loss=cross_entropy", "--local-crops", "0", "--steps-per-epoch", "2"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["student"]["head.weight"].shape == (2, 32)  # a linear classifier, two classes
    assert state["config"]["supervised"]["loss"] == "cross_entropy"
    bad = subprocess.run([*args[:-6], "--set", "supervised.loss=hinge"], capture_output=True, text=True)
    assert (
        bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and "supervised.loss" in bad.stderr
    )
