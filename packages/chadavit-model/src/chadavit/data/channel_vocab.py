"""The channel vocabulary of a training run: the names a name-embedding model gets a vector for.

Either the names of the user's table (`data.channel_vocab`, `--channel-vocab FILE`), in file
order, or the canonical names of the dataset's channel labels (KEY.json `channels[i].label`,
through the table) seen at least `data.channel_min_count` times, most frequent first.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chadavit.channels import ChannelNormaliser, build_vocabulary, read_channel_table
from chadavit.data.shards import DataError, list_shards, split_member_name

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig


def channel_labels(data_dir: str | Path) -> Iterator[object]:
    """Every channel label of every sample in DIR/shards/*.tar (only the KEY.json members are read)."""
    for shard in list_shards(data_dir):
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:
                    if split_member_name(member.name)[1] != "json" or not member.isfile():
                        continue
                    handle = tar.extractfile(member)
                    meta = json.loads(handle.read()) if handle is not None else None
                    channels = meta.get("channels") if isinstance(meta, dict) else None
                    for channel in channels if isinstance(channels, list) else []:
                        yield channel.get("label") if isinstance(channel, dict) else None
        except (OSError, tarfile.TarError, EOFError, ValueError) as error:
            raise DataError(f"{shard}: cannot read the channel labels ({error})") from error


def dataset_vocabulary(
    data_dir: str | Path, normaliser: ChannelNormaliser, min_count: int
) -> tuple[str, ...]:
    """The canonical names of the dataset's channels seen at least `min_count` times."""
    vocab = build_vocabulary((normaliser(label) for label in channel_labels(data_dir)), min_count)
    if not vocab:
        raise DataError(
            f"no channel label of {data_dir} maps to a known name seen at least {min_count} times; "
            "pass --channel-vocab FILE (name -> aliases) or lower data.channel_min_count"
        )
    return vocab


def with_channel_vocabulary(config: TrainConfig) -> TrainConfig:
    """`config` with `channel_vocab` in its model overrides when the model embeds channels by name."""
    overrides = dict(config.model_overrides)
    if overrides.get("channel_embedding", "slot") == "slot" or overrides.get("channel_vocab"):
        return config
    if config.data.channel_vocab:
        vocab = tuple(read_channel_table(config.data.channel_vocab))
    else:
        normaliser = ChannelNormaliser.with_file(None)
        vocab = dataset_vocabulary(config.data_dir, normaliser, config.data.channel_min_count)
    return dataclasses.replace(config, model_overrides={**overrides, "channel_vocab": list(vocab)})


def loader_normaliser(config: TrainConfig, uses_names: bool) -> ChannelNormaliser | None:
    """What the loader maps labels with: only for a model that reads names (others pay nothing)."""
    return ChannelNormaliser.with_file(config.data.channel_vocab) if uses_names else None
