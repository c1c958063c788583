"""Two-process DDP (gloo) training end to end: loss goes down, ranks stay identical, export loads."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.spawn import ProcessException

import chadavit
from chadavit.data.testing import write_shards
from chadavit.ssl.dino_loss import sinkhorn_knopp
from chadavit.train.checkpoint import read_checkpoint
from chadavit.train.distributed import spawn_local
from chadavit.train.loop import train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import rank_one_fails, sinkhorn_on_halves, tiny_config


@pytest.mark.slow
def test_two_ranks_train_in_sync_and_export_a_loadable_teacher(tmp_path: Path) -> None:
    # Uneven shards: the ranks get different numbers of samples and still run the same steps.
    write_shards(tmp_path / "data", [11, 7, 9, 5], channel_counts=(1, 2, 3, 4, 5), image_size=64, seed=3)
    config = tiny_config(
        tmp_path / "data", tmp_path / "run", nproc=2, epochs=4, sync_check_every=1, data__num_workers=1
    )
    result = train(config)

    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == list(range(24))
    losses = [m["loss"] for m in metrics]
    assert all(math.isfinite(loss) for loss in losses)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, f"loss did not go down: {losses}"
    assert all(m["weights_in_sync"] is True for m in metrics)  # checked after every step
    assert all(m["images_per_s"] > 0 for m in metrics)

    model = chadavit.from_pretrained(result.model_dir)
    images = [torch.rand(3, 64, 64), torch.rand(1, 64, 64), torch.rand(5, 64, 64)]
    embedding = model(chadavit.ChannelBatch.from_images(images))
    assert embedding.shape == (3, 32) and bool(torch.isfinite(embedding).all())
    # The export is the EMA teacher's backbone of the final checkpoint.
    teacher = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["teacher"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, teacher[f"backbone.{name}"]), name
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_a_failing_rank_stops_the_others_instead_of_leaving_them_waiting() -> None:
    started = time.monotonic()
    with pytest.raises(ProcessException, match=r"rank 1 failed on purpose|by peer"):
        spawn_local(2, rank_one_fails, (300.0,))
    # Rank 0 sat in a barrier with a 300 s timeout; it learnt of rank 1's death (gloo saw the
    # connection close, or the parent terminated it), whichever came first, and nothing hung.
    assert time.monotonic() - started < 120


def test_sinkhorn_knopp_balances_the_global_batch_across_ranks(tmp_path: Path) -> None:
    """Two ranks holding half a batch each get the same teacher probabilities as one process."""
    logits = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    logits[:8, 0] += 0.8  # the halves differ: rank 0's half prefers prototype 0
    torch.save(logits, tmp_path / "logits.pt")
    spawn_local(2, sinkhorn_on_halves, (60.0, str(tmp_path / "logits.pt"), str(tmp_path)))
    both = torch.cat([torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)])
    torch.testing.assert_close(both, sinkhorn_knopp(logits, 0.04), rtol=1e-5, atol=1e-6)
