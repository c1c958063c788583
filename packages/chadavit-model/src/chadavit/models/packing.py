"""How sequences of different lengths share one token tensor.

Every model keeps its tokens as one 2-D tensor (T, D): the sequences are laid end to end, in
groups of equal length. Per-token layers (linears, norms, MLPs) then run once over all T rows,
and attention runs once per group as an ordinary dense batch through SDPA with no mask. The
padded reference path is the special case of one group holding every sequence padded to the
same length, with a key mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SequenceGroup:
    """`num_seqs` sequences of `seq_len` tokens stored at rows [start, stop) of the packed tensor."""

    start: int
    num_seqs: int
    seq_len: int
    # (num_seqs, seq_len) bool, True for real tokens; only the padded reference path has one.
    key_mask: Tensor | None = None

    @property
    def stop(self) -> int:
        return self.start + self.num_seqs * self.seq_len


@dataclass(frozen=True)
class PackedLayout:
    """Where each sequence lives in a packed (T, D) token tensor."""

    groups: tuple[SequenceGroup, ...]
    # seq_order[k] is the input index of the k-th packed sequence.
    seq_order: Tensor
    # Length of each packed sequence, in packed order (on the tokens' device, for drop path).
    seq_lens: Tensor
    num_tokens: int
    # Packed sequence index of every token, (T,).
    token_seq: Tensor

    @property
    def num_seqs(self) -> int:
        return self.seq_order.numel()

    def drop_path_scale(self, rate: float, like: Tensor) -> Tensor:
        """Stochastic depth: a (T, 1) scale that zeroes whole sequences with probability `rate`.

        One draw per sequence, taken in input order, so the padded and the padding-free path
        drop the same images for the same random state.
        """
        keep = 1.0 - rate
        kept = (torch.rand(self.num_seqs, device=like.device) < keep).to(like.dtype) / keep
        return kept[self.seq_order].index_select(0, self.token_seq)[:, None]

    def first_token_rows(self) -> Tensor:
        """Row of token 0 (CLS) of every packed sequence, in packed order."""
        rows = [
            torch.arange(g.start, g.stop, g.seq_len, dtype=torch.long) for g in self.groups if g.num_seqs > 0
        ]
        return torch.cat(rows)


def group_by_length(counts: list[int]) -> list[tuple[int, list[int]]]:
    """(count, input indices) for each distinct count, ascending; indices keep input order."""
    by_count: dict[int, list[int]] = {}
    for index, count in enumerate(counts):
        by_count.setdefault(count, []).append(index)
    return sorted(by_count.items())


def plan_padding_free(counts: list[int], tokens_per_plane: int, device: torch.device) -> PackedLayout:
    """Sequences of [CLS, planes...], grouped by plane count: no padding at all."""
    groups: list[SequenceGroup] = []
    order: list[int] = []
    lens: list[int] = []
    start = 0
    for count, members in group_by_length(counts):
        seq_len = 1 + count * tokens_per_plane
        groups.append(SequenceGroup(start=start, num_seqs=len(members), seq_len=seq_len))
        start += len(members) * seq_len
        order.extend(members)
        lens.extend([seq_len] * len(members))
    return _layout(groups, order, lens, device)


def plan_padded(
    counts: list[int], num_slots: int, tokens_per_plane: int, device: torch.device
) -> PackedLayout:
    """The reference layout: every sequence padded to `num_slots` planes, padded keys masked."""
    seq_len = 1 + num_slots * tokens_per_plane
    real_slots = torch.arange(num_slots)[None, :] < torch.tensor(counts)[:, None]  # (S, slots)
    key_mask = torch.cat(
        [torch.ones(len(counts), 1, dtype=torch.bool), real_slots.repeat_interleave(tokens_per_plane, dim=1)],
        dim=1,
    )
    group = SequenceGroup(start=0, num_seqs=len(counts), seq_len=seq_len, key_mask=key_mask.to(device))
    return _layout([group], list(range(len(counts))), [seq_len] * len(counts), device)


def _layout(
    groups: list[SequenceGroup], order: list[int], lens: list[int], device: torch.device
) -> PackedLayout:
    lens_t = torch.tensor(lens, dtype=torch.long)
    return PackedLayout(
        groups=tuple(groups),
        seq_order=torch.tensor(order, dtype=torch.long).to(device),
        seq_lens=lens_t.to(device),
        num_tokens=int(lens_t.sum()),
        token_seq=torch.repeat_interleave(torch.arange(len(lens)), lens_t).to(device),
    )


def packed_gather_index(
    counts: list[int], layout: PackedLayout, tokens_per_plane: int, cls_row: int
) -> Tensor:
    """Index into [plane tokens (P*N rows), CLS row] that builds the packed padding-free tensor.

    Row t of the packed tensor is source row index[t]: CLS for token 0 of every sequence, else
    the plane tokens of that sequence in channel order.
    """
    plane_start = torch.tensor([0, *counts[:-1]], dtype=torch.long).cumsum(0)
    order = layout.seq_order.cpu()
    seq_lens = layout.seq_lens.cpu()
    seq_first_row = torch.cumsum(seq_lens, 0) - seq_lens
    seq_of_token = torch.repeat_interleave(torch.arange(order.numel()), seq_lens)
    offset = torch.arange(layout.num_tokens) - seq_first_row[seq_of_token]
    source = plane_start[order][seq_of_token] * tokens_per_plane + offset - 1
    return torch.where(offset == 0, torch.full_like(source, cls_row), source)
