"""Seeds derived from names and numbers, so every random choice is a pure function of the run seed."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple: stable across processes and Python versions (no `hash()`)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded by `derive_seed(*parts)`."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def augment_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """The generator of one batch's augmentations, wherever they run."""
    return seeded_generator("augment", seed, epoch, step, rank)
