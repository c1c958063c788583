"""The DINO loss: cross-entropy from the centred, sharpened teacher to the student, over view pairs.

For teacher outputs t_i (global views only) and student outputs s_j (all views), the loss is the
mean over pairs i != j of  -sum softmax((t_i - c) / tau_t) * log_softmax(s_j / tau_s).
The center c is an EMA (momentum 0.9) of the teacher's mean output over the global batch (all
ranks), which with sharpening avoids collapse (Caron et al. 2021, Sec. 3.1).

`centering="sinkhorn_knopp"` replaces the center by DINOv2's Sinkhorn-Knopp normalisation of the
teacher's batch (Oquab et al. 2023, after SwAV): the teacher's assignments are made to use every
prototype equally within the batch, so features cannot collapse onto a few easy clusters (such as the
channel count), which EMA centering does not prevent on small, homogeneous datasets.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

CENTERINGS = ("ema", "sinkhorn_knopp")


def _all_reduce(tensor: Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temperature: float, iterations: int = 3) -> Tensor:
    """Teacher probabilities (B, K) whose prototypes share the global batch equally (DINOv2's recipe).

    Alternately normalises the prototypes' and the samples' mass of exp(logits / T); the batch is
    every rank's, so the constraint holds over the global batch.
    """
    scores = logits.float() / temperature
    # One shift on every rank changes nothing after normalisation and keeps exp() finite.
    q = torch.exp(scores - _all_reduce(scores.max().clone(), dist.ReduceOp.MAX)).t()
    samples = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    prototypes = q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)) * prototypes  # each prototype: 1/K of the mass
        q /= q.sum(dim=0, keepdim=True) * samples  # each sample: 1/B of the mass
    return (q * samples).t()


class DINOLoss(nn.Module):
    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9, centering: str = "ema"
    ) -> None:
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: list[Tensor], teacher_out: list[Tensor], teacher_temp: float) -> Tensor:
        """`student_out`: one (B, K) tensor per view, global views first; `teacher_out`: the global ones.

        Also updates the center from `teacher_out` (after computing the loss with the old center).
        """
        teacher_probs = self.teacher_probabilities(teacher_out, teacher_temp)
        student_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total = student_logp[0].new_zeros(())
        pairs = 0
        for i, probs in enumerate(teacher_probs):
            for j, logp in enumerate(student_logp):
                if i == j:  # the same view seen by both networks is not a training signal
                    continue
                total = total + torch.sum(-probs * logp, dim=-1).mean()
                pairs += 1
        if pairs == 0:
            raise ValueError("DINO needs at least two views: got one global view and no local views")
        if self.centering == "ema":  # Sinkhorn-Knopp needs no center: skip its all-reduces
            self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def teacher_probabilities(self, teacher_out: list[Tensor], teacher_temp: float) -> list[Tensor]:
        if self.centering == "sinkhorn_knopp":
            probs = sinkhorn_knopp(torch.cat(teacher_out), teacher_temp)
            return list(probs.split([t.shape[0] for t in teacher_out]))
        return [F.softmax((t.float() - self.center) / teacher_temp, dim=-1) for t in teacher_out]

    @torch.no_grad()
    def update_center(self, teacher_out: list[Tensor]) -> None:
        """EMA of the teacher's batch mean; the mean is over every rank's batch when distributed."""
        stacked = torch.cat([t.float() for t in teacher_out], dim=0)
        batch_sum = stacked.sum(dim=0, keepdim=True)
        count = _all_reduce(torch.tensor([float(stacked.shape[0])], device=stacked.device))
        batch_center = _all_reduce(batch_sum) / count
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
