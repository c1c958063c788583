"""The GPU code paths, run on the CPU: bf16 autocast (model and DINO step), views made on the device,
and benchmarks/gpu_bench.py itself. On a GPU these are the defaults (`precision=auto` is bf16,
`data.augment_on=auto` is device); nothing else in the suite executes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import chadavit
from chadavit.data.testing import write_shards
from chadavit.train.loop import train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import tiny_config

# bf16 keeps 8 bits of mantissa (relative step 2^-8 = 0.004). Outputs after the final LayerNorm are
# of order 1; a few roundings through two blocks stay well inside this.
BF16_TOLERANCE = 5e-2
BF16 = torch.autocast("cpu", dtype=torch.bfloat16)
ROOT = Path(__file__).resolve().parents[2]

MODELS = {
    # name: (overrides, channel counts of the batch)
    "chadavit_petit": ({}, [1, 3, 10, 2, 5, 3]),
    "chadavit_moyen_v1": ({}, [4, 1, 7, 2]),
    "onechannel_vit_tiny": ({}, [3, 3, 3]),  # the baseline takes one channel count per batch
    "interchannel_vit_moyen": ({"patch_size": 64}, [2, 5, 1]),
}


def _largest_difference(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(first, second, strict=True))


def _outputs(features) -> list[torch.Tensor]:
    return [features.cls, *features.patch_tokens]


def _attention_dtype(model) -> list[torch.dtype]:
    """Records the dtype the first block's attention projection computes in."""
    seen: list[torch.dtype] = []
    model.blocks[0].attention.out_proj.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_forward_agrees_between_paths_and_with_fp32(name, tiny_model, random_images) -> None:
    overrides, counts = MODELS[name]
    model = tiny_model(name, seed=3, **overrides)
    images = random_images(counts, seed=3)
    computed_in = _attention_dtype(model)
    with torch.no_grad():
        fp32 = model.forward_features(images)
        with BF16:
            free = model.forward_features(images)
            padded = model.forward_features(images, padded=True)
    assert computed_in == [torch.float32, torch.bfloat16, torch.bfloat16]  # autocast really ran in bf16
    for output in _outputs(free) + _outputs(padded):
        assert torch.isfinite(output).all()
    assert _largest_difference(_outputs(free), _outputs(padded)) <= BF16_TOLERANCE
    assert _largest_difference(_outputs(free), _outputs(fp32)) <= BF16_TOLERANCE


def _gradients(model, images, padded: bool, autocast: bool) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    with BF16 if autocast else torch.autocast("cpu", enabled=False):
        embedding = model(images, padded=padded)
    embedding.float().pow(2).mean().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("name", ["chadavit_petit", "chadavit_moyen_v1"])
def test_bf16_backward_is_finite_and_points_where_fp32_does(name, tiny_model, random_images) -> None:
    model = tiny_model(name, seed=4, drop_path_rate=0.0).train()
    images = random_images([2, 5, 1, 3], seed=4)
    reference = _gradients(model, images, padded=False, autocast=False)
    free = _gradients(model, images, padded=False, autocast=True)
    padded = _gradients(model, images, padded=True, autocast=True)
    every_parameter = sum(p.numel() for p in model.parameters())
    assert free.numel() == padded.numel() == reference.numel() == every_parameter
    assert torch.isfinite(free).all() and torch.isfinite(padded).all()
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(free, reference, dim=0) > 0.99
    assert cosine(free, padded, dim=0) > 0.99


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_shards(root, [8, 8], channel_counts=(1, 2, 3), image_size=64, seed=1)
    return root


def _losses(shards: Path, run: Path, **overrides) -> list[float]:
    train(tiny_config(shards, run, epochs=1, data__steps_per_epoch=3, **overrides))
    return [line["loss"] for line in read_metrics(run)]


def test_dino_steps_in_bf16_are_finite_and_close_to_fp32(shards: Path, tmp_path: Path) -> None:
    fp32 = _losses(shards, tmp_path / "fp32", precision="fp32")
    bf16 = _losses(shards, tmp_path / "bf16", precision="bf16")
    assert len(bf16) == 3 and all(torch.isfinite(torch.tensor(bf16)).tolist())
    assert bf16 != fp32  # the steps did run in bf16
    assert bf16 == pytest.approx(fp32, rel=0.05)
    exported = chadavit.from_pretrained(tmp_path / "bf16" / "model")
    assert all(torch.isfinite(p).all() for p in exported.parameters())


def test_views_made_on_the_device_train_exactly_like_views_made_by_the_loader(
    shards: Path, tmp_path: Path
) -> None:
    in_loader = _losses(shards, tmp_path / "loader", data__augment_on="loader")
    on_device = _losses(shards, tmp_path / "device", data__augment_on="device")
    assert on_device == in_loader  # same generator draws on the same pixels: the same run, bit for bit


def test_gpu_bench_without_a_gpu_says_so_and_its_cpu_smoke_run_works() -> None:
    script = str(ROOT / "benchmarks" / "gpu_bench.py")
    if not torch.cuda.is_available():
        plain = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0 and plain.stdout.startswith("bench-gpu: no CUDA device"), plain.stderr
        assert len(plain.stdout.splitlines()) == 1
    # The model benchmark is bench_model.py (run by `make bench`); the smoke run covers the rest.
    smoke = subprocess.run(
        [sys.executable, script, "--cpu-smoke", "--skip-model-bench"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert "all finite: True" in smoke.stdout
    assert "images/s" in smoke.stdout and "GFLOP per image per step" in smoke.stdout
