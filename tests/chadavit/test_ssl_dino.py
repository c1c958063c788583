"""DINO pieces against their definitions: head, loss over view pairs, centering, EMA, schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chadavit.ssl import DINOHead, DINOLoss, cosine_schedule, ema_update, linear_warmup_then_constant


def test_head_shapes_and_normalised_prototypes() -> None:
    torch.manual_seed(0)
    head = DINOHead(in_dim=16, out_dim=50, hidden_dim=32, bottleneck_dim=8)
    out = head(torch.randn(5, 16) * 100).detach()
    assert out.shape == (5, 50)
    # Bottleneck and prototypes both have unit norm, so every logit is a cosine in [-1, 1].
    assert float(out.abs().max()) <= 1.0 + 1e-5
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 32), (32, 8)]
    assert head.last_layer_parameters() == [head.last_layer_direction]  # magnitude frozen at 1
    learnable = DINOHead(in_dim=16, out_dim=50, hidden_dim=32, bottleneck_dim=8, norm_last_layer=False)
    assert len(learnable.last_layer_parameters()) == 2


def reference_dino_loss(
    student: list, teacher: list, center: torch.Tensor, t_temp: float, s_temp: float
) -> float:
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        q = F.softmax((t - center) / t_temp, dim=-1)
        for j, s in enumerate(student):
            if i == j:
                continue
            total += float((-q * F.log_softmax(s / s_temp, dim=-1)).sum(dim=-1).mean())
            pairs += 1
    return total / pairs


def test_loss_is_the_mean_cross_entropy_over_pairs_of_different_views() -> None:
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(4, 10, generator=generator) for _ in range(4)]  # 2 global + 2 local
    teacher = [torch.randn(4, 10, generator=generator) for _ in range(2)]
    loss_fn = DINOLoss(out_dim=10, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, 10, generator=generator))
    center_before = loss_fn.center.clone()
    loss = loss_fn(student, teacher, teacher_temp=0.04)
    expected = reference_dino_loss(student, teacher, center_before, 0.04, 0.1)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)
    # Center: EMA of the teacher's batch mean, updated after the loss used the old one.
    batch_mean = torch.cat(teacher).mean(dim=0, keepdim=True)
    assert torch.allclose(loss_fn.center, 0.9 * center_before + 0.1 * batch_mean, atol=1e-6)


def test_sinkhorn_knopp_teacher_uses_every_prototype_equally() -> None:
    """DINOv2's centering: each sample's probabilities sum to 1, each prototype gets 1/K of the batch."""
    from chadavit.ssl.dino_loss import sinkhorn_knopp

    generator = torch.Generator().manual_seed(0)
    # A collapsed teacher: every sample prefers prototype 0 by far.
    logits = torch.randn(64, 8, generator=generator) * 0.1
    logits[:, 0] += 0.9
    softmax = F.softmax(logits / 0.04, dim=-1)
    balanced = sinkhorn_knopp(logits, 0.04, iterations=50)
    assert torch.allclose(balanced.sum(dim=1), torch.ones(64), atol=1e-5)
    assert float(softmax[:, 0].mean()) > 0.99  # EMA-free softmax keeps the collapse
    assert torch.allclose(balanced.sum(dim=0), torch.full((8,), 64 / 8), atol=1e-2)
    # The loss uses it for the teacher, leaves the EMA center alone, and the config names the choices.
    loss_fn = DINOLoss(out_dim=8, centering="sinkhorn_knopp")
    student = [torch.randn(64, 8, generator=generator) for _ in range(3)]
    assert torch.isfinite(loss_fn(student, [logits, logits], 0.04))
    assert float(loss_fn.center.abs().sum()) == 0.0  # no EMA center kept: it is not used
    with pytest.raises(ValueError, match="centering must be one of"):
        DINOLoss(out_dim=8, centering="batchnorm")
    from chadavit.ssl.dino import DinoConfig

    with pytest.raises(ValueError, match=r"dino\.centering must be one of"):
        DinoConfig(centering="mean")


def test_loss_gradient_reaches_the_student_only() -> None:
    student = [torch.randn(3, 6, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(3, 6, requires_grad=True) for _ in range(2)]
    DINOLoss(out_dim=6)(student, teacher, 0.04).backward()
    assert all(s.grad is not None and float(s.grad.abs().sum()) > 0 for s in student)
    assert all(t.grad is None for t in teacher)


def test_a_single_view_is_refused() -> None:
    with pytest.raises(ValueError, match="two views"):
        DINOLoss(out_dim=4)([torch.randn(2, 4)], [torch.randn(2, 4)], 0.04)


def test_ema_moves_the_teacher_toward_the_student() -> None:
    teacher, student = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, momentum=0.75)
    for old, new, target in zip(before, teacher.parameters(), student.parameters(), strict=True):
        assert torch.allclose(new, 0.75 * old + 0.25 * target)


def test_cosine_schedule_warms_up_then_decays_to_final() -> None:
    schedule = cosine_schedule(1.0, 0.1, epochs=10, steps_per_epoch=5, warmup_epochs=2, warmup_start=0.0)
    assert schedule.shape == (50,)
    assert schedule[0] == 0.0 and np.all(np.diff(schedule[:10]) > 0)
    assert schedule[10] == pytest.approx(1.0)
    assert np.all(np.diff(schedule[10:]) <= 1e-12)
    assert 0.1 < schedule[-1] < 0.11  # DINO stops one step short of the final value
    momentum = cosine_schedule(0.996, 1.0, epochs=4, steps_per_epoch=3)
    assert momentum[0] == pytest.approx(0.996) and momentum[-1] > 0.999 and np.all(np.diff(momentum) >= 0)


def test_teacher_temperature_ramps_then_holds_and_stops_part_way_in_short_runs() -> None:
    temps = linear_warmup_then_constant(0.04, 0.07, warmup_epochs=2, epochs=4, steps_per_epoch=3)
    assert temps.shape == (12,)
    assert temps[0] == pytest.approx(0.04) and temps[5] == pytest.approx(0.07) and np.all(temps[5:] == 0.07)
    short = linear_warmup_then_constant(0.04, 0.07, warmup_epochs=30, epochs=2, steps_per_epoch=3)
    assert short.shape == (6,) and short[-1] < 0.045
