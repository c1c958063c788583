"""The ranks' weight check: a run whose ranks drift apart stops, and the digest sees one element."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.multiprocessing.spawn import ProcessException

from chadavit.data.testing import write_shards
from chadavit.train.distributed import spawn_local
from chadavit.train.loop import weights_digest
from chadavit.train.preflight import prepare
from chadavit.train.testing import rank_one_drifts, tiny_config


def test_the_digest_changes_when_one_element_of_one_module_changes() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(4, 3), nn.Linear(3, 2)
    before = weights_digest(first, second)
    assert weights_digest(first, second) == before  # a pure function of the bytes
    with torch.no_grad():
        second.bias[1] = torch.nextafter(second.bias[1], torch.tensor(1.0))  # one ulp, last module
    assert weights_digest(first, second) != before
    with torch.no_grad():
        second.bias[1] = torch.nextafter(second.bias[1], torch.tensor(-1.0))
    assert weights_digest(first, second) == before
    with torch.no_grad():
        first.weight[2, 3] += 1e-3
    assert weights_digest(first, second) != before


@pytest.mark.slow
def test_a_run_whose_ranks_drift_apart_stops_at_the_next_check(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [8, 8], channel_counts=(1, 2, 3), image_size=64, seed=3)
    config = tiny_config(
        tmp_path / "data", tmp_path / "run", nproc=2, epochs=1, sync_check_every=2, data__num_workers=0
    )
    # Rank 1 nudges its teacher during step 3; the check after it (every 2 steps) reports step 4.
    with pytest.raises(
        ProcessException, match=r"ranks hold different weights at step 4: digests \[\d+, \d+\]"
    ):
        spawn_local(2, rank_one_drifts, (prepare(config), 3))
    assert not (tmp_path / "run" / "model").exists()  # stopped before the export
