"""The shard loader: disjoint ranks, equal step counts, exact skip-to-step, channel-count batches."""

from __future__ import annotations

import io
import logging
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from chadavit.data.augment import AugmentConfig
from chadavit.data.loader import DataConfig, EpochPlan, ShardSet, make_epoch_loader, plan_epochs
from chadavit.data.shards import DataError
from chadavit.data.testing import corrupt_member, write_shards

SMALL_VIEWS = AugmentConfig(global_crop_size=32, local_crop_size=16, n_local_crops=1)


def epoch_batches(
    shard_set: ShardSet, data: DataConfig, rank: int, world: int, epoch: int = 0, start: int = 0,
    views: bool = False, seed: int = 0,
) -> list:  # fmt: skip
    steps, streams = plan_epochs(shard_set, data, rank, world)
    output = "views" if views else "keys"
    plan = EpochPlan(
        shard_set, data, SMALL_VIEWS, seed, epoch, rank, world, steps, streams, 10, start, output
    )
    return list(make_epoch_loader(plan))


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> ShardSet:
    """Five shards of uneven sizes, 1 to 4 channels: ranks cannot get equal shares by shard."""
    root = tmp_path_factory.mktemp("uneven")
    write_shards(root, [9, 2, 6, 4, 7], image_size=32, seed=1)
    return ShardSet.scan(root)


@pytest.mark.parametrize(("world", "workers"), [(2, 2), (3, 1), (4, 0)])
def test_ranks_see_disjoint_samples_and_run_the_same_number_of_steps(
    uneven: ShardSet, world: int, workers: int
) -> None:
    data = DataConfig(batch_size=2, num_workers=workers, shuffle_buffer=4)
    expected_steps = uneven.total // world // data.batch_size
    keys_per_rank = []
    for rank in range(world):
        batches = epoch_batches(uneven, data, rank, world)
        assert [b.step for b in batches] == list(range(expected_steps))
        assert all(len(b) == data.batch_size for b in batches)
        keys_per_rank.append({key for b in batches for key in b.keys})
    for a in range(world):
        for b in range(a + 1, world):
            assert not keys_per_rank[a] & keys_per_rank[b], f"ranks {a} and {b} share samples"


def test_fewer_shards_than_ranks_splits_by_sample(tmp_path: Path) -> None:
    write_shards(tmp_path, [10], image_size=32)
    shard_set = ShardSet.scan(tmp_path)
    data = DataConfig(batch_size=2, num_workers=2, shuffle_buffer=2, steps_per_epoch=4)
    seen = [{k for b in epoch_batches(shard_set, data, rank, 2) for k in b.keys} for rank in range(2)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 10


def test_order_is_a_function_of_seed_and_epoch(uneven: ShardSet) -> None:
    data = DataConfig(batch_size=2, num_workers=0, shuffle_buffer=4)
    keys = lambda **kw: [b.keys for b in epoch_batches(uneven, data, 0, 1, **kw)]  # noqa: E731
    assert keys(epoch=0) == keys(epoch=0)
    assert keys(epoch=0) != keys(epoch=1)
    assert keys(epoch=0, seed=0) != keys(epoch=0, seed=1)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("start", [1, 4])
def test_starting_at_a_step_yields_exactly_the_remaining_batches(
    uneven: ShardSet, workers: int, start: int
) -> None:
    """What a resume relies on: batches k.. of a restarted epoch equal those of the full epoch."""
    data = DataConfig(batch_size=2, num_workers=workers, shuffle_buffer=4, steps_per_epoch=6)
    full = epoch_batches(uneven, data, 1, 2, epoch=2, views=True)
    resumed = epoch_batches(uneven, data, 1, 2, epoch=2, start=start, views=True)
    assert [b.step for b in resumed] == list(range(start, 6))
    for ours, theirs in zip(resumed, full[start:], strict=True):
        assert ours.keys == theirs.keys
        assert torch.equal(ours.channel_counts, theirs.channel_counts)
        for a, b in zip(
            ours.global_views + ours.local_views, theirs.global_views + theirs.local_views, strict=True
        ):
            assert torch.equal(a, b)


def test_batches_hold_one_channel_count_and_views_share_it(uneven: ShardSet) -> None:
    data = DataConfig(batch_size=2, num_workers=0, shuffle_buffer=4, max_pending_batches=8)
    batches = epoch_batches(uneven, data, 0, 1, views=True)
    assert len(batches) == uneven.total // 2
    for batch in batches:
        assert len(set(batch.channel_counts.tolist())) == 1
        for view in batch.global_batches() + batch.local_batches():
            assert torch.equal(view.channel_counts, batch.channel_counts)
            assert float(view.pixels.min()) >= 0.0 and float(view.pixels.max()) <= 1.0
        assert [v.image_size for v in batch.global_batches()] == [(32, 32)] * 2
        assert [v.image_size for v in batch.local_batches()] == [(16, 16)]


def test_corrupt_members_are_skipped_counted_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_shards(tmp_path, [6, 6], image_size=32)
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    bad_png = corrupt_member(shards[0], "c00.png", sample_position=2)
    bad_json = corrupt_member(shards[1], "json", sample_position=0)
    shard_set = ShardSet.scan(tmp_path)
    data = DataConfig(batch_size=2, num_workers=0, shuffle_buffer=2, steps_per_epoch=5)
    with caplog.at_level(logging.WARNING, logger="chadavit.data.loader"):
        batches = epoch_batches(shard_set, data, 0, 1, views=True)
    assert len(batches) == 5 and all(len(b) == 2 for b in batches)
    seen = {k for b in batches for k in b.keys}
    assert bad_png not in seen and bad_json not in seen
    assert sum(b.skipped for b in batches) == 2  # each bad sample counted once, not once per pass
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert bad_png in warnings and bad_json in warnings


def test_a_truncated_shard_ends_that_shard_only(tmp_path: Path) -> None:
    write_shards(tmp_path, [5, 5], image_size=32)
    first, intact = sorted((tmp_path / "shards").glob("*.tar"))
    with tarfile.open(intact) as tar:
        intact_keys = {member.name.split(".")[0] for member in tar.getmembers()}
    cut = first.stat().st_size // 2
    with tarfile.open(first) as tar:
        ends: dict[str, int] = {}
        for member in tar.getmembers():
            key = member.name.split(".")[0]
            ends[key] = max(ends.get(key, 0), member.offset_data + member.size)
    kept = {key for key, end in ends.items() if end <= cut}  # samples wholly before the cut
    first.write_bytes(first.read_bytes()[:cut])
    shard_set = ShardSet.scan(tmp_path)
    # No shuffle buffer and 16 draws: exactly two passes over the 5 + 3 readable samples.
    data = DataConfig(batch_size=2, num_workers=0, shuffle_buffer=0, steps_per_epoch=8)
    batches = epoch_batches(shard_set, data, 0, 1)
    assert len(batches) == 8
    assert sum(b.skipped for b in batches) >= 1
    drawn = Counter(key for b in batches for key in b.keys)
    # The intact shard is read in full in every pass, and the truncated one up to its cut.
    assert drawn == dict.fromkeys(intact_keys | kept, 2), drawn
    assert len(kept) == 3


@pytest.mark.parametrize("layout", ["missing", "no-shards", "empty-shards"])
def test_an_unusable_data_dir_is_one_clear_error(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        (root / "shards").mkdir(parents=True)
    if layout == "empty-shards":
        (root / "shards" / "idrcell-000000.tar").write_bytes(b"\0" * 1024)
    with pytest.raises(DataError, match=str(root)):
        ShardSet.scan(root)


def test_views_made_on_the_training_device_equal_those_made_by_the_loader(uneven: ShardSet) -> None:
    """`data.augment_on=device` sends decoded images and draws the views with the same generator."""
    data = DataConfig(batch_size=2, num_workers=1, shuffle_buffer=4, steps_per_epoch=3)
    steps, streams = plan_epochs(uneven, data, 0, 1)
    in_loader = list(make_epoch_loader(EpochPlan(uneven, data, SMALL_VIEWS, 0, 1, 0, 1, steps, streams, 10)))
    plan = EpochPlan(uneven, data, SMALL_VIEWS, 0, 1, 0, 1, steps, streams, 10, output="images")
    for sent, expected in zip(make_epoch_loader(plan), in_loader, strict=True):
        assert sent.images is not None and sent.images.dtype == torch.uint8 and not sent.global_views
        made = sent.with_views(SMALL_VIEWS, seed=0, epoch=1, rank=0, device=torch.device("cpu"))
        assert made.keys == expected.keys and torch.equal(made.channel_counts, expected.channel_counts)
        for a, b in zip(
            made.global_views + made.local_views, expected.global_views + expected.local_views, strict=True
        ):
            assert torch.equal(a, b)


def test_a_rank_that_would_get_no_sample_is_a_clear_error(tmp_path: Path) -> None:
    write_shards(tmp_path, [2, 1], image_size=32)
    shard_set = ShardSet.scan(tmp_path)
    data = DataConfig(batch_size=1, num_workers=0)
    with pytest.raises(DataError, match="rank 2 of 3 would get no samples"):
        plan_epochs(shard_set, data, 2, 3)
    with pytest.raises(DataError, match="fewer than the 4 ranks"):
        plan_epochs(shard_set, data, 0, 4)


def test_a_stream_with_no_decodable_sample_fails_instead_of_spinning(tmp_path: Path) -> None:
    write_shards(tmp_path, [2], image_size=32)
    shard = sorted((tmp_path / "shards").glob("*.tar"))[0]
    for position in (0, 1):
        corrupt_member(shard, "json", sample_position=position)
    data = DataConfig(batch_size=1, num_workers=0, shuffle_buffer=4, steps_per_epoch=2)
    with pytest.raises(DataError, match="no readable sample"):
        epoch_batches(ShardSet.scan(tmp_path), data, 0, 1)


@pytest.mark.parametrize("cut_in", ["data", "header"])
def test_a_truncated_shard_is_reported_by_name_once_per_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut_in: str
) -> None:
    write_shards(tmp_path, [3], channel_counts=(2,), image_size=32)
    shard = sorted((tmp_path / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        last = tar.getmembers()[-1]  # the last channel of the last sample: cut inside its data or header
    # `tarfile` itself ends a member list quietly at a cut header: the reader must still report it.
    cut = last.offset_data + 10 if cut_in == "data" else last.offset + 100
    shard.write_bytes(shard.read_bytes()[:cut])
    shard_set = ShardSet.scan(tmp_path)
    # One sample per step, no buffer: steps 0-1 read pass 1, 2-3 pass 2, 4 starts pass 3.
    data = DataConfig(batch_size=1, num_workers=0, shuffle_buffer=0, steps_per_epoch=5)
    with caplog.at_level(logging.WARNING, logger="chadavit.data.loader"):
        batches = epoch_batches(shard_set, data, 0, 1)
    truncations = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(truncations) == 2 and all(shard.name in message for message in truncations)
    # Each pass reports the cut once; the incomplete last sample is counted once, then remembered.
    assert sum(b.skipped for b in batches) == 3
    assert len({key for b in batches for key in b.keys}) == 2


def test_a_data_dir_named_like_a_url_is_read_as_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """webdataset opens URLs; a relative `run:1/data` must still be a local directory."""
    monkeypatch.chdir(tmp_path)
    write_shards("run:1/data", [3, 3], image_size=32)
    shard_set = ShardSet.scan("run:1/data")
    data = DataConfig(batch_size=2, num_workers=0, shuffle_buffer=2, steps_per_epoch=3)
    batches = epoch_batches(shard_set, data, 0, 1)
    assert len(batches) == 3 and sum(b.skipped for b in batches) == 0


def test_a_member_name_met_twice_is_skipped_and_counted_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_shards(tmp_path, [3], image_size=32)
    shard = sorted((tmp_path / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(member, tar.extractfile(member).read()) for member in tar.getmembers()]
    doubled = next(member for member, _ in members[3:] if member.name.endswith(".c00.png"))
    with tarfile.open(shard, "w") as tar:  # the shard again, one sample's first channel written twice
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
            if member is doubled:
                tar.addfile(member, io.BytesIO(data))
    data = DataConfig(batch_size=1, num_workers=0, shuffle_buffer=0, steps_per_epoch=3)
    with caplog.at_level(logging.WARNING, logger="chadavit.data.loader"):
        batches = epoch_batches(ShardSet.scan(tmp_path), data, 0, 1)
    assert len({key for b in batches for key in b.keys}) == 3  # the sample itself is kept
    assert sum(b.skipped for b in batches) == 1
    assert any("duplicate" in r.getMessage() and shard.name in r.getMessage() for r in caplog.records)
