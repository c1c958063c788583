"""`--recipe paper`: the authors' settings load with their cited values, and each option they need works."""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chadavit.data.augment import AugmentConfig, jitter_intensity, multi_crop, solarize
from chadavit.data.testing import write_shards
from chadavit.ssl.dino import build_networks, param_groups
from chadavit.train.cli import app, build_config
from chadavit.train.loop import Schedules, train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import TINY_MODEL, TINY_OVERRIDES


def test_the_paper_recipe_holds_the_authors_values() -> None:
    config = build_config({"recipe": "paper"})
    assert config.model == "chadavit_moyen_v1" and config.epochs == 400
    assert config.data.group_by_channels is False
    augment = config.augment
    assert (augment.n_local_crops, augment.global_crop_scale) == (0, (0.08, 1.0))
    assert (augment.interpolation, augment.hflip_p, augment.vflip_p, augment.rotate90) == (
        "bicubic",
        0.5,
        0.0,
        False,
    )
    assert (augment.intensity_p, augment.intensity_order) == (1.0, "shift_first")
    assert (augment.intensity_shift, augment.intensity_scale) == ((-0.3, 0.3), (0.5, 1.5))
    assert (augment.blur_p_global, augment.solarize_p_global) == ((1.0, 0.1), (0.0, 0.2))
    dino = config.dino
    assert (dino.momentum_teacher, dino.momentum_teacher_end, dino.norm_last_layer) == (0.9995, 1.0, False)
    assert (dino.warmup_teacher_temp, dino.teacher_temp, dino.warmup_teacher_temp_epochs) == (0.04, 0.07, 50)
    optim = config.optim
    assert (optim.warmup_start_lr, optim.min_lr, optim.warmup_epochs, optim.clip_grad) == (1e-5, 0.0, 10, 0.0)
    assert optim.weight_decay == optim.weight_decay_end and optim.decay_all_params is True


def test_the_paper_recipe_sets_per_model_values_under_later_flags() -> None:
    assert build_config({"recipe": "paper", "model": "onechannel_vit_tiny"}).optim.base_lr == 0.005
    assert build_config({"recipe": "paper", "model": "standard_vit_tiny"}).data.first_channels == 3
    # A flag still wins over the recipe.
    assert (
        build_config({"recipe": "paper", "model": "onechannel_vit_tiny", "base_lr": 0.01}).optim.base_lr
        == 0.01
    )


def test_every_value_of_the_paper_recipe_is_cited() -> None:
    text = (resources.files("chadavit") / "configs" / "paper.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not re.match(r"^\s*[\w.]+: \S", line):  # a key with a value (not a section head)
            continue
        comment_above = index > 0 and lines[index - 1].strip().startswith("#")
        assert "#" in line or comment_above, f"uncited value: {line.strip()}"


def test_an_unknown_recipe_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["--recipe", "nope", "--data", "d", "--out", "o"])
    assert result.exit_code == 2
    assert "unknown recipe 'nope'; known recipes: paper" in result.output


def test_shift_first_jitter_is_the_authors_order() -> None:
    view = torch.full((2, 4, 4), 0.5)
    config = AugmentConfig(intensity_p=1.0, intensity_order="shift_first")
    generator = torch.Generator().manual_seed(0)
    gain = torch.Generator().manual_seed(0)
    torch.rand(2, generator=gain)  # the draws before the gain: which channels are chosen
    gains = torch.rand(2, generator=gain, dtype=torch.float64) * 1.0 + 0.5
    shifts = torch.rand(2, generator=gain, dtype=torch.float64) * 0.6 - 0.3
    expected = ((0.5 + shifts) * gains).clamp(0, 1).float()
    out = jitter_intensity(view, generator, config)
    torch.testing.assert_close(out[:, 0, 0], expected)


def test_solarize_inverts_the_bright_half_of_chosen_images_only() -> None:
    view = torch.tensor([0.2, 0.5, 0.9]).repeat(3, 1, 1).reshape(3, 1, 3)  # 3 channels
    counts = torch.tensor([2, 1])
    out = solarize(view, counts, torch.Generator().manual_seed(0), 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.2, 0.5, 0.1]))
    assert torch.equal(solarize(view, counts, torch.Generator(), 0.0), view)


def test_bicubic_crops_differ_from_bilinear_and_stay_in_range() -> None:
    images = [torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)]
    views = {}
    for mode in ("bilinear", "bicubic"):
        config = AugmentConfig(
            global_crop_size=32, n_local_crops=0, interpolation=mode, solarize_p_global=(0.0, 0.2)
        )
        views[mode] = multi_crop(images, torch.Generator().manual_seed(0), config).global_views[0]
    assert not torch.equal(views["bilinear"], views["bicubic"])
    assert float(views["bicubic"].min()) >= 0.0 and float(views["bicubic"].max()) <= 1.0


def test_decay_all_params_and_warmup_start(tmp_path: Path) -> None:
    config = build_config({"recipe": "paper"}).with_overrides(
        {"model_overrides": TINY_MODEL, "dino.out_dim": 16, "dino.hidden_dim": 8, "dino.bottleneck_dim": 4}
    )
    student, _ = build_networks(config)
    everything = sum(1 for p in student.parameters() if p.requires_grad)
    assert [len(g["params"]) for g in param_groups(student, decay_all=True)] == [everything, 0]
    assert len(param_groups(student)[1]["params"]) > 0  # the default keeps DINO's exclusions
    schedules = Schedules.build(config, steps_per_epoch=10, world_size=1)
    assert schedules.lr[0] == pytest.approx(1e-5) and schedules.lr[-1] == pytest.approx(0.0, abs=1e-9)
    assert schedules.weight_decay.min() == schedules.weight_decay.max() == 0.04


@pytest.mark.slow
def test_a_paper_recipe_run_trains(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [8], channel_counts=(1, 2, 3, 4), image_size=48, seed=2)
    tiny = {**TINY_OVERRIDES, "augment.n_local_crops": 0, "data.steps_per_epoch": 3, "data.image_size": 48}
    params = {"recipe": "paper", "data_dir": tmp_path / "data", "out_dir": tmp_path / "run", "epochs": 1}
    config = build_config(params).with_overrides({**tiny, "model_overrides": TINY_MODEL})
    assert config.augment.interpolation == "bicubic" and config.data.group_by_channels is False
    train(config)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
