"""The padding-free default path gives the padded reference path's numbers, in input order."""

from __future__ import annotations

import random

import pytest
import torch

from chadavit import ChannelBatch

TOLERANCE = 1e-5  # fp32, max abs difference of CLS and of every real patch token


def _max_difference(first, second) -> float:
    cls = (first.cls - second.cls).abs().max().item()
    patches = max(
        (a - b).abs().max().item() for a, b in zip(first.patch_tokens, second.patch_tokens, strict=True)
    )
    return max(cls, patches)


@pytest.mark.parametrize(
    ("name", "size", "seed"),
    [
        ("chadavit_petit", 64, 0),
        ("chadavit_petit", (48, 80), 1),
        ("chadavit_petit", 96, 2),
        ("chadavit_moyen_v1", 64, 3),
        ("chadavit_moyen_v1", 32, 4),
        ("interchannel_vit_moyen", 64, 5),
    ],
)
def test_padded_and_padding_free_agree_on_random_mixes(tiny_model, random_images, name, size, seed) -> None:
    overrides = {"img_size": 64, "patch_size": 64} if name == "interchannel_vit_moyen" else {}
    model = tiny_model(name, seed=seed, **overrides)
    rng = random.Random(seed)
    counts = [rng.randint(1, 10) for _ in range(7)] + [10, 1]  # every mix includes both extremes
    rng.shuffle(counts)
    images = random_images(counts, size=size, seed=seed)
    with torch.no_grad():
        free = model.forward_features(images)
        padded = model.forward_features(images, padded=True)
        cls_only = model(images)
    assert free.cls.shape == (len(counts), 32)
    assert [tuple(p.shape[:1]) for p in free.patch_tokens] == [(c,) for c in counts]
    assert _max_difference(free, padded) <= TOLERANCE
    assert torch.allclose(cls_only, free.cls, atol=TOLERANCE, rtol=0)


def test_outputs_follow_input_order_and_ignore_batch_neighbours(tiny_model, random_images) -> None:
    model = tiny_model("chadavit_petit", seed=7)
    counts = [4, 1, 10, 2, 4, 7, 1]
    images = random_images(counts, seed=7)
    permutation = [5, 2, 0, 6, 3, 1, 4]
    with torch.no_grad():
        batch_cls = model(ChannelBatch.from_images(images))
        shuffled_cls = model([images[i] for i in permutation])
        alone = torch.cat([model([image]) for image in images])
    assert torch.allclose(shuffled_cls, batch_cls[permutation], atol=TOLERANCE, rtol=0)
    assert torch.allclose(alone, batch_cls, atol=TOLERANCE, rtol=0)


def test_training_step_agrees_including_drop_path_and_gradients(tiny_model, random_images) -> None:
    """Same random state -> the same images dropped, the same loss and the same gradients."""
    model = tiny_model("chadavit_petit", seed=3, drop_path_rate=0.5, depth=4).train()
    images = random_images([3, 1, 5, 2, 3], seed=3)

    def step(padded: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(11)
        loss = model(images, padded=padded).pow(2).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    free_loss, free_grads = step(padded=False)
    padded_loss, padded_grads = step(padded=True)
    torch.manual_seed(12)
    other_draw = model(images).pow(2).mean().detach()
    assert abs(free_loss - padded_loss) <= TOLERANCE
    assert other_draw != free_loss  # drop path really was active
    for name, grad in free_grads.items():
        assert torch.allclose(grad, padded_grads[name], atol=1e-5, rtol=1e-4), name
