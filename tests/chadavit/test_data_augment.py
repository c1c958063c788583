"""Multi-crop augmentations: geometry is exact, channels stay with their image, jitter is per channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chadavit.data.augment import (
    AugmentConfig,
    Geometry,
    gaussian_blur,
    geometric_view,
    jitter_intensity,
    multi_crop,
    sample_crop_boxes,
    sample_geometry,
)
from chadavit.data.shards import decode_sample, iter_raw_samples, list_shards
from chadavit.data.testing import synthetic_image, write_shards

NO_NOISE = dict(intensity_p=0.0, blur_p_global=(0.0, 0.0), blur_p_local=0.0)


def images(counts: list[int], size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(c, size, size, generator=generator) for c in counts]


def test_decoded_sample_is_the_written_image(tmp_path: Path) -> None:
    write_shards(tmp_path, [2], channel_counts=(3,), image_size=224, seed=5)
    raw = next(iter_raw_samples(list_shards(tmp_path)[0]))
    sample = decode_sample(raw)
    assert sample.pixels.shape == (3, 224, 224) and sample.pixels.dtype == torch.uint8
    expected = synthetic_image(np.random.default_rng(5), 3, 224)
    assert torch.equal(sample.pixels, torch.from_numpy(expected))
    as_float = sample.as_float()
    assert as_float.dtype == torch.float32 and float(as_float.min()) >= 0.0 and float(as_float.max()) <= 1.0


def test_channels_of_another_size_are_resized_to_224(tmp_path: Path) -> None:
    write_shards(tmp_path, [1], channel_counts=(2,), image_size=100)
    sample = decode_sample(next(iter_raw_samples(list_shards(tmp_path)[0])))
    assert sample.pixels.shape == (2, 224, 224)


def geometry(box: list[int], hflip: bool = False, vflip: bool = False, turns: int = 0) -> Geometry:
    return Geometry(torch.tensor([box]), torch.tensor([hflip]), torch.tensor([vflip]), torch.tensor([turns]))


def test_whole_image_crop_without_flip_is_the_identity() -> None:
    image = images([3])[0]
    out = geometric_view(image, torch.tensor([3]), geometry([0, 0, 32, 32]), 32)
    assert torch.allclose(out, image, atol=1e-6)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_rotations_are_exact_quarter_turns(turns: int) -> None:
    image = images([2])[0]
    out = geometric_view(image, torch.tensor([2]), geometry([0, 0, 32, 32], turns=turns), 32)
    assert torch.allclose(out, torch.rot90(image, turns, dims=(1, 2)), atol=1e-6)


def test_flips_mirror_the_image() -> None:
    image = images([1], size=8)[0]
    counts = torch.tensor([1])
    assert torch.allclose(
        geometric_view(image, counts, geometry([0, 0, 8, 8], hflip=True), 8), image.flip(-1)
    )
    assert torch.allclose(
        geometric_view(image, counts, geometry([0, 0, 8, 8], vflip=True), 8), image.flip(-2)
    )


def test_a_crop_box_selects_its_pixels_and_is_resized() -> None:
    ramp_x = torch.arange(8.0).expand(1, 8, 8)  # value = column index
    out = geometric_view(ramp_x, torch.tensor([1]), geometry([4, 0, 4, 8]), 4)
    # Columns 4..7 map one to one; rows are averaged two to one, which a column ramp does not see.
    assert torch.allclose(out, torch.arange(4.0, 8.0).expand(1, 4, 4), atol=1e-5)
    uniform = torch.full((2, 32, 32), 0.25)
    assert torch.allclose(
        geometric_view(uniform, torch.tensor([2]), geometry([3, 5, 10, 14]), 16), uniform[:, :16, :16]
    )


def test_sampled_geometry_stays_inside_the_image() -> None:
    drawn = sample_geometry(torch.Generator().manual_seed(0), 500, 224, 224, (0.05, 0.4), AugmentConfig())
    x0, y0, w, h = drawn.boxes.unbind(dim=1)
    assert bool((x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 224).all() and (y0 + h <= 224).all())
    area = (w * h).double() / 224**2
    assert float(area.min()) > 0.04 and float(area.max()) < 0.41
    assert set(drawn.turns.tolist()) == {0, 1, 2, 3}
    assert 0.4 < float(drawn.hflip.double().mean()) < 0.6


def test_crop_boxes_respect_the_scale_range() -> None:
    boxes = sample_crop_boxes(torch.Generator().manual_seed(0), 2000, (0.05, 0.4), (3 / 4, 4 / 3))
    area = boxes[:, 2] * boxes[:, 3]
    assert float(area.min()) >= 0.05 - 1e-9 and float(area.max()) <= 0.4 + 1e-9
    assert bool(((boxes[:, 0] >= 0) & (boxes[:, 0] + boxes[:, 2] <= 1 + 1e-9)).all())
    assert bool(((boxes[:, 1] >= 0) & (boxes[:, 1] + boxes[:, 3] <= 1 + 1e-9)).all())


def test_intensity_jitter_is_drawn_per_channel_and_honours_its_probability() -> None:
    view = torch.full((200, 4, 4), 0.5)
    never = jitter_intensity(view, torch.Generator().manual_seed(0), AugmentConfig(intensity_p=0.0))
    assert torch.equal(never, view)
    config = AugmentConfig(intensity_p=1.0)
    always = jitter_intensity(view, torch.Generator().manual_seed(0), config)
    per_channel = always[:, 0, 0]
    assert torch.equal(always, per_channel[:, None, None].expand_as(always))  # one gain+shift per channel
    assert per_channel.unique().numel() > 150  # channels of one image differ
    # 0.5 * U(0.5, 1.5) + U(-0.3, 0.3) lies in [-0.05, 1.05] before clamping to [0, 1].
    assert float(per_channel.min()) >= 0.0 and float(per_channel.max()) <= 1.0
    half = jitter_intensity(view, torch.Generator().manual_seed(1), AugmentConfig(intensity_p=0.5))
    changed = (half[:, 0, 0] != 0.5).float().mean()
    assert 0.35 < float(changed) < 0.65


def test_blur_smooths_only_the_chosen_channels() -> None:
    view = images([2], size=32)[0]
    out = gaussian_blur(view, torch.tensor([0.0, 2.0]))
    assert torch.equal(out[0], view[0])
    assert float(out[1].var()) < 0.5 * float(view[1].var())
    assert torch.allclose(out[1].mean(), view[1].mean(), atol=0.02)


def test_multi_crop_views_keep_every_image_channels_and_sizes() -> None:
    batch = images([1, 3, 2], size=64)
    config = AugmentConfig(global_crop_size=32, local_crop_size=16, n_local_crops=3)
    views = multi_crop(batch, torch.Generator().manual_seed(0), config)
    assert views.channel_counts.tolist() == [1, 3, 2]
    assert [v.shape for v in views.global_views] == [(6, 32, 32)] * 2
    assert [v.shape for v in views.local_views] == [(6, 16, 16)] * 3
    again = multi_crop(batch, torch.Generator().manual_seed(0), config)
    assert all(torch.equal(a, b) for a, b in zip(views.global_views, again.global_views, strict=True))
    assert not torch.equal(views.global_views[0], views.global_views[1])
    no_local = multi_crop(
        batch, torch.Generator().manual_seed(0), AugmentConfig(global_crop_size=32, n_local_crops=0)
    )
    assert no_local.local_views == ()


def test_each_channel_of_a_view_comes_from_the_same_channel_of_its_image() -> None:
    """Channels are neither mixed nor reordered (shuffle/drop are off by default)."""
    constant = [
        torch.stack([torch.full((16, 16), (10 * i + c) / 100) for c in range(n)])
        for i, n in enumerate([2, 3])
    ]
    config = AugmentConfig(global_crop_size=16, local_crop_size=16, n_local_crops=1, **NO_NOISE)
    views = multi_crop(constant, torch.Generator().manual_seed(3), config)
    expected = torch.tensor([0.0, 0.01, 0.10, 0.11, 0.12])
    for view in views.global_views + views.local_views:
        assert torch.allclose(view.mean(dim=(1, 2)), expected, atol=1e-6)


def test_channel_drop_and_shuffle_are_shared_by_all_views() -> None:
    constant = [torch.stack([torch.full((16, 16), c / 10) for c in range(6)])]
    config = AugmentConfig(
        global_crop_size=16,
        local_crop_size=16,
        n_local_crops=2,
        channel_shuffle=True,
        channel_drop_p=0.5,
        **NO_NOISE,
    )
    views = multi_crop(constant, torch.Generator().manual_seed(7), config)
    kept = views.channel_counts.item()
    assert 1 <= kept <= 6
    orders = [view.mean(dim=(1, 2)) for view in views.global_views + views.local_views]
    assert all(torch.allclose(order, orders[0], atol=1e-6) for order in orders)


def test_uint8_input_is_scaled_to_unit_range() -> None:
    image = (torch.arange(16 * 16, dtype=torch.int64) % 256).to(torch.uint8).reshape(1, 16, 16)
    config = AugmentConfig(
        global_crop_size=16, n_local_crops=0, global_crop_scale=(1.0, 1.0), crop_ratio=(1, 1),
        hflip_p=0.0, vflip_p=0.0, rotate90=False, **NO_NOISE,
    )  # fmt: skip
    views = multi_crop([image], torch.Generator().manual_seed(0), config)
    assert torch.allclose(views.global_views[0], image.float() / 255, atol=1e-5)
