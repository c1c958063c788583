"""Any multiple of the patch size works: positions are interpolated bicubically (DINO style)."""

from __future__ import annotations

import pytest
import torch

from chadavit.models.layers import interpolate_patch_pos


def test_native_grid_is_used_unchanged() -> None:
    positions = torch.randn(14 * 14, 8)
    assert interpolate_patch_pos(positions, 14, (14, 14)) is positions


def test_interpolation_keeps_constants_and_corner_order() -> None:
    constant = torch.full((14 * 14, 4), 0.25)
    assert torch.allclose(interpolate_patch_pos(constant, 14, (6, 6)), torch.full((36, 4), 0.25), atol=1e-6)
    # A ramp along x stays a ramp along x: left columns below right columns, rows identical.
    ramp = torch.arange(14.0).repeat(14)[:, None]
    resized = interpolate_patch_pos(ramp, 14, (4, 6)).reshape(4, 6)
    assert torch.all(resized[:, 1:] > resized[:, :-1])
    assert torch.allclose(resized, resized[:1].expand(4, 6))


@pytest.mark.parametrize(("size", "grid"), [(96, 6), (64, 4)])
def test_model_runs_at_other_sizes_with_the_right_grid(tiny_model, random_images, size, grid) -> None:
    model = tiny_model("chadavit_petit", img_size=224)
    images = random_images([3, 1], size=size)
    with torch.no_grad():
        free = model.forward_features(images)
        padded = model.forward_features(images, padded=True)
    assert [tuple(t.shape) for t in free.patch_tokens] == [(3, grid, grid, 32), (1, grid, grid, 32)]
    assert torch.allclose(free.cls, padded.cls, atol=1e-5, rtol=0)
    # Positions matter: rotating the image changes the embedding.
    with torch.no_grad():
        rotated = model([image.rot90(1, (1, 2)) for image in images])
    assert not torch.allclose(rotated, free.cls, atol=1e-3)


def test_position_embedding_gets_gradients_at_other_sizes(tiny_model, random_images) -> None:
    model = tiny_model("chadavit_petit", img_size=224).train()
    model(random_images([2, 3], size=96)).pow(2).sum().backward()  # (a plain sum is flat after LayerNorm)
    assert model.pos_embed.grad is not None and model.pos_embed.grad[0, 0, 1:].abs().sum() > 0
