"""Supervised training on the samples' `label` (KEY.json), beside DINO: ProxyNCA++ or cross-entropy.

The CHAMMI baselines (Chen et al. 2023, github chaudatascience/channel_adaptive_models) and
DiChaViT train with ProxyNCA++ (Teh et al. 2020, arXiv 2004.01113): one learned proxy per class,
and a softmax over the negative squared distances between the L2-normalised embedding and the
L2-normalised proxies, both scaled by sqrt(1 / T). Settings from that repository: T = 0.11111
(`configs/morphem70k/model/*.yaml`, `temperature`, not learned), proxies drawn as randn / 8
(`models/convnext_base.py`), the loss on the backbone's pooled embedding with no projection head
(`models/loss_fn.py`, `trainer.py`). Since ||s x - s p||^2 = 2 s^2 (1 - cos(x, p)), the logits are
(2 / T) (cos - 1): a cosine softmax with scale 2 / T = 18.

`cross_entropy` is the plain alternative: a linear classifier on the embedding.

Labels reach the loss through the sample keys the loop already passes (`Views.keys`): the class of
every key is read once from the shards' KEY.json (tar headers are seeked over, only the JSON is
read), so neither the loader nor the loop knows about labels. Every view of an image (global and
local crops, as the augmentation config makes them) is classified with the image's label.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chadavit.batch import ChannelBatch
from chadavit.data.shards import DataError, list_shards, split_member_name
from chadavit.models import create_model
from chadavit.models.base import PackedViT
from chadavit.seeding import derive_seed
from chadavit.ssl.dino import clip_per_parameter, param_groups
from chadavit.ssl.objective import Views

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig

LOSSES = ("proxynca", "cross_entropy")
# channel_adaptive_models, configs/morphem70k/model/*.yaml: `temperature: 0.11111` (1/9).
PROXYNCA_TEMPERATURE = 0.11111
# channel_adaptive_models, models/convnext_base.py: proxies = randn(classes, dim) / 8.
PROXY_INIT_DIVISOR = 8.0


@dataclass(frozen=True)
class SupervisedConfig:
    """The supervised objective (`--objective supervised`); limits in train/config.py."""

    loss: str = "proxynca"  # or "cross_entropy"
    temperature: float = PROXYNCA_TEMPERATURE  # ProxyNCA++ only

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"supervised.loss must be one of {list(LOSSES)}, got {self.loss!r}")


def read_labels(data_dir: str | Path) -> dict[str, str]:
    """Key -> `label` of every sample in DIR/shards/*.tar; DataError naming a sample without one."""
    labels: dict[str, str] = {}
    missing: list[str] = []
    for shard in list_shards(data_dir):
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:
                    key, suffix = split_member_name(member.name)
                    if suffix != "json" or not member.isfile():
                        continue
                    handle = tar.extractfile(member)
                    meta = json.loads(handle.read()) if handle is not None else None
                    label = meta.get("label") if isinstance(meta, dict) else None
                    if isinstance(label, str) and label:
                        labels[key] = label
                    elif isinstance(label, int) and not isinstance(label, bool):
                        labels[key] = str(label)
                    else:
                        missing.append(f"{shard.name}:{key}")
        except (OSError, tarfile.TarError, EOFError, ValueError) as error:
            raise DataError(f"{shard}: cannot read the sample labels ({error})") from error
    if missing:
        raise DataError(
            f"{len(missing)} samples of {data_dir} have no `label` in their KEY.json (first: {missing[0]}); "
            "supervised training needs one on every sample (idrcell import-images or import-chammi "
            "write it)"
        )
    if len(set(labels.values())) < 2:
        raise DataError(
            f"the samples of {data_dir} have {len(set(labels.values()))} label(s); a classifier needs 2"
        )
    return labels


class ProxyHead(nn.Module):
    """ProxyNCA++ logits: (2 / T) (cos(x, proxy) - 1), the negative scaled squared distances."""

    def __init__(self, dim: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(n_classes, dim) / PROXY_INIT_DIVISOR)
        self.temperature = temperature

    def forward(self, embeddings: Tensor) -> Tensor:
        cosine = F.normalize(embeddings, dim=-1) @ F.normalize(self.proxies, dim=-1).T
        return (2.0 / self.temperature) * (cosine - 1.0)


class SupervisedNetwork(nn.Module):
    """Backbone + class head over a list of views; views of one resolution run as one batch."""

    def __init__(self, backbone: PackedViT, head: nn.Module, padded: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.padded = padded

    def forward(self, views: Sequence[ChannelBatch]) -> Tensor:
        embeddings, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].image_size == views[start].image_size:
                end += 1
            group = views[start:end]
            merged = ChannelBatch.concat(group)  # channel names too, when the views have them
            embeddings.append(self.backbone(merged, padded=self.padded))
            start = end
        merged = torch.cat(embeddings)
        # The head in fp32 under autocast: proxies' cosines scaled by 2 / T = 18 lose too much in bf16.
        with torch.autocast(device_type=merged.device.type, enabled=False):
            return self.head(merged.float())


class SupervisedObjective:
    """Classification of every view by its image's label; checkpoint entries `student`, `classes`."""

    def __init__(
        self, network: SupervisedNetwork, labels: Mapping[str, str], clip_grad: float, loss: str
    ) -> None:
        self.network = network
        self.classes = tuple(sorted(set(labels.values())))
        index = {name: i for i, name in enumerate(self.classes)}
        self.class_of = {key: index[label] for key, label in labels.items()}
        self.clip_grad = clip_grad
        self.loss_name = loss
        self._forward: nn.Module = network

    @classmethod
    def build(cls, config: TrainConfig, steps_per_epoch: int) -> SupervisedObjective:
        labels = read_labels(config.data_dir)
        n_classes = len(set(labels.values()))
        torch.manual_seed(derive_seed("init", config.seed))  # the same weights on every rank
        backbone = create_model(config.model, **dict(config.model_overrides))
        settings = config.supervised
        head: nn.Module
        if settings.loss == "proxynca":
            head = ProxyHead(backbone.embed_dim, n_classes, settings.temperature)
        else:
            head = nn.Linear(backbone.embed_dim, n_classes)
        network = SupervisedNetwork(backbone, head, padded=config.padded)
        return cls(network, labels, config.optim.clip_grad, settings.loss)

    @property
    def backbone(self) -> PackedViT:
        return self.network.backbone

    def to(self, device: torch.device | str) -> SupervisedObjective:
        self.network.to(device)
        return self

    def use_forward(self, forward: nn.Module) -> None:
        self._forward = forward

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self.network)  # DINO's rule: no decay on biases, norms and embeddings

    def targets(self, keys: Sequence[str], device: torch.device) -> Tensor:
        try:
            return torch.tensor([self.class_of[key] for key in keys], dtype=torch.long, device=device)
        except KeyError as error:  # a shard changed since the labels were read
            raise DataError(
                f"sample {error.args[0]!r} was not in the dataset when its labels were read"
            ) from None

    def loss(self, views: Views, step: int) -> Tensor:
        every_view = views.global_views + views.local_views
        if not views.keys:
            raise ValueError("the supervised objective needs the sample keys of the batch")
        logits = self._forward(every_view)
        device = logits.device
        targets = self.targets(views.keys, device).repeat(len(every_view))  # views are stacked in order
        return F.cross_entropy(logits, targets)

    def adjust_gradients(self, step: int) -> None:
        if self.clip_grad > 0:
            clip_per_parameter(list(self.network.parameters()), self.clip_grad)

    def after_step(self, step: int) -> None:
        pass

    def step_metrics(self, step: int) -> dict[str, float]:
        return {}

    def weight_modules(self) -> tuple[nn.Module, ...]:
        return (self.network,)

    def export_backbone(self) -> PackedViT:
        return self.network.backbone

    def state_dict(self) -> dict[str, Any]:
        # `student`: the name `chadavit-train export --network student` reads the backbone from.
        return {"student": self.network.state_dict(), "classes": list(self.classes)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "student" not in state or "classes" not in state:
            raise ValueError("the checkpoint is not one of the supervised objective (no student or classes)")
        if tuple(state["classes"]) != self.classes:
            raise ValueError(
                f"the checkpoint was trained on {len(state['classes'])} classes, the data has "
                f"{len(self.classes)} other ones; resume on the same dataset"
            )
        self.network.load_state_dict(state["student"])
