"""Channel names from the shards' KEY.json labels to the batches, through training, into the export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import chadavit
from chadavit.channels import ChannelNormaliser
from chadavit.data.augment import AugmentConfig, multi_crop
from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader, plan_epochs
from chadavit.data.testing import synthetic_image, write_image_shards
from chadavit.train.cli import app
from chadavit.train.testing import tiny_cli_args, tiny_config

runner = CliRunner()
# Raw labels as IDR studies write them, and their canonical names.
LABELS = [["DAPI", "Phalloidin"], ["Hoechst 33342", "alpha-tubulin", "FITC"], ["DAPI", "Phalloidin", "GFP"]]
NAMES = {
    ("DAPI", "Phalloidin"): ("dna", "actin"),
    ("Hoechst 33342", "alpha-tubulin", "FITC"): ("dna", "tubulin", "unknown"),
    ("DAPI", "Phalloidin", "GFP"): ("dna", "actin", "gfp"),
}


def write_labelled(data_dir: Path, n: int = 24) -> dict[str, tuple[str, ...]]:
    """`n` images cycling through LABELS; returns key -> the raw labels of its channels."""
    rng = np.random.default_rng(0)
    items = [(synthetic_image(rng, len(LABELS[i % 3]), 64), LABELS[i % 3]) for i in range(n)]
    keys = write_image_shards(data_dir, items, 8)
    return {key: tuple(labels) for key, (_, labels) in zip(keys, items, strict=True)}


def test_the_loader_fills_each_channels_name_from_the_shards(tmp_path: Path) -> None:
    labels_of = write_labelled(tmp_path / "data")
    config = tiny_config(tmp_path / "data", tmp_path / "run")
    shard_set = ShardSet.scan(tmp_path / "data")
    steps, streams = plan_epochs(shard_set, config.data, 0, 1)
    normaliser = ChannelNormaliser.builtin()
    for output in ("images", "views"):
        plan = EpochPlan(
            shard_set, config.data, config.augment, 0, 0, 0, 1, steps, streams, 10,
            output=output, channel_normaliser=normaliser,
        )  # fmt: skip
        seen = 0
        for batch in make_epoch_loader(plan):
            assert batch.channel_names == tuple(NAMES[labels_of[key]] for key in batch.keys)
            batch = batch.with_views(config.augment, 0, 0, 0, torch.device("cpu"))
            for view in batch.global_batches() + batch.local_batches():
                assert view.channel_names == batch.channel_names
            seen += len(batch)
        assert seen == steps * config.data.batch_size
    # A slot model's loader does not read names (its batches are unchanged).
    plain = EpochPlan(shard_set, config.data, config.augment, 0, 0, 0, 1, steps, streams, 10)
    assert all(batch.channel_names is None for batch in make_epoch_loader(plain))


def test_channel_shuffle_and_drop_move_the_names_with_the_channels() -> None:
    # Each channel is a constant plane whose value says which channel it is; nothing else changes it.
    values = {"dna": 0.2, "actin": 0.5, "tubulin": 0.8}
    images = [
        torch.stack([torch.full((32, 32), values[n]) for n in names])
        for names in (["dna", "actin", "tubulin"],) * 6
    ]
    config = AugmentConfig(
        global_crop_size=16, local_crop_size=8, n_local_crops=1, intensity_p=0.0,
        blur_p_global=(0.0, 0.0), blur_p_local=0.0, channel_shuffle=True, channel_drop_p=0.3,
    )  # fmt: skip
    names = [["dna", "actin", "tubulin"]] * 6
    views = multi_crop(images, torch.Generator().manual_seed(0), config, names)
    assert views.channel_names is not None and len(set(views.channel_names)) > 1  # orders differ
    for view in (*views.global_views, *views.local_views):
        planes = torch.split(view, views.channel_counts.tolist())
        for image_planes, image_names in zip(planes, views.channel_names, strict=True):
            assert len(image_names) == image_planes.shape[0]
            for plane, name in zip(image_planes, image_names, strict=True):
                assert abs(float(plane.mean()) - values[name]) < 1e-3


def test_name_mode_training_builds_the_vocabulary_and_exports_it(tmp_path: Path) -> None:
    write_labelled(tmp_path / "data")
    args = [
        *tiny_cli_args(tmp_path / "data", tmp_path / "run", epochs=1),
        "--set",
        "model.channel_embedding=name",
    ]
    result = runner.invoke(
        app, [*args, "--set", "augment.channel_shuffle=true", "--set", "data.channel_min_count=8"]
    )
    assert result.exit_code == 0, result.output
    # Counts over 24 images: dna 24, actin 16, tubulin 8, gfp 8; unknown never enters.
    model = chadavit.from_pretrained(tmp_path / "run" / "model")
    assert model.config.channel_embedding == "name"
    assert model.config.channel_vocab == ("dna", "actin", "gfp", "tubulin")
    images = [torch.rand(2, 64, 64)]
    swapped = model([images[0][[1, 0]]], channel_names=[["actin", "dna"]])
    torch.testing.assert_close(model(images, channel_names=[["dna", "actin"]]), swapped, atol=1e-5, rtol=0)


def test_a_users_table_is_the_vocabulary(tmp_path: Path) -> None:
    write_labelled(tmp_path / "data")
    table = tmp_path / "vocab.json"
    table.write_text(json.dumps({"dna": [], "actin": [], "microtubules": ["alpha-tubulin"]}))
    args = [
        *tiny_cli_args(tmp_path / "data", tmp_path / "run", epochs=1),
        "--set",
        "model.channel_embedding=slot+name",
    ]
    result = runner.invoke(app, [*args, "--channel-vocab", str(table), "--set", "data.steps_per_epoch=1"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["channel_vocab"] == ["dna", "actin", "microtubules"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--channel-vocab", "{missing}"], "cannot read channel table"),
        (["--channel-vocab", "{bad}"], "listed under 'dna' and 'nucleus'"),
        (["--set", "data.channel_min_count=1000"], "no channel label of"),
        (["--set", "data.channel_min_count=0"], "data.channel_min_count"),
        (["--set", "model.channel_embedding=colour"], "channel_embedding must be one of"),
    ],
)
def test_bad_vocabulary_settings_are_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    write_labelled(tmp_path / "data")
    (tmp_path / "bad.yaml").write_text("dna: [DAPI]\nnucleus: [dapi]\n")
    flags = [f.format(missing=tmp_path / "nope.yaml", bad=tmp_path / "bad.yaml") for f in flags]
    args = [
        *tiny_cli_args(tmp_path / "data", tmp_path / "run", epochs=1),
        "--set",
        "model.channel_embedding=name",
    ]
    result = runner.invoke(app, [*args, *flags])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run" / "model").exists()
