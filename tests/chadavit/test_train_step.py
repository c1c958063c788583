"""One DINO step: schedules reach the optimizer, prototypes stay frozen in epoch 1, the teacher is an EMA;
another objective runs in the same loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import chadavit
from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader
from chadavit.data.testing import write_shards
from chadavit.ssl.methods import OBJECTIVES
from chadavit.train.checkpoint import read_checkpoint
from chadavit.train.config import RULES
from chadavit.train.distributed import DistContext
from chadavit.train.loop import Trainer, train
from chadavit.train.metrics import read_metrics
from chadavit.train.testing import tiny_config
from chadavit.train.validation import one_of


@pytest.fixture()
def trainer_and_batch(tmp_path: Path) -> tuple[Trainer, object]:
    write_shards(tmp_path / "data", [8], image_size=64)
    config = tiny_config(tmp_path / "data", tmp_path / "run", optim__warmup_epochs=1, epochs=2)
    shard_set = ShardSet.scan(config.data_dir)
    trainer = Trainer(config, shard_set, DistContext(0, 1, 0, 1, torch.device("cpu")), reporter=None)
    plan = EpochPlan(shard_set, config.data, config.augment, 0, 0, 0, 1, trainer.steps_per_epoch, 1, 10)
    return trainer, next(iter(make_epoch_loader(plan)))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_a_step_in_the_first_epoch_keeps_the_prototypes_and_moves_the_rest(trainer_and_batch: tuple) -> None:
    trainer, batch = trainer_and_batch
    dino = trainer.objective
    student_before, teacher_before = snapshot(dino.student), snapshot(dino.teacher)
    dino.student.train()
    trainer.step = 1  # inside the LR warm-up: lr must be the schedule's value at step 1
    loss = trainer.train_step(batch.global_batches(), batch.local_batches())
    assert torch.isfinite(loss)
    decay, no_decay = trainer.optimizer.param_groups
    assert trainer.schedules.lr[1] > 0
    assert decay["lr"] == no_decay["lr"] == pytest.approx(float(trainer.schedules.lr[1]))
    assert decay["weight_decay"] == pytest.approx(float(trainer.schedules.weight_decay[1]))
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    student_after = snapshot(dino.student)
    unchanged = {n for n in student_before if torch.equal(student_after[n], student_before[n])}
    # The prototypes are frozen in epoch 1 and their norms always (norm_last_layer); all else learns.
    assert unchanged == {"head.last_layer_direction", "head.last_layer_magnitude"}
    momentum = float(dino.momentum[1])
    for name, before in teacher_before.items():
        expected = momentum * before + (1 - momentum) * student_after[name]
        assert torch.allclose(dict(dino.teacher.named_parameters())[name], expected, atol=1e-6), name


def test_after_the_first_epoch_the_prototypes_learn(trainer_and_batch: tuple) -> None:
    trainer, batch = trainer_and_batch
    student = trainer.objective.student
    before = student.head.last_layer_direction.detach().clone()
    student.train()
    trainer.step = trainer.steps_per_epoch  # first step of epoch 2
    trainer.train_step(batch.global_batches(), batch.local_batches())
    assert not torch.equal(student.head.last_layer_direction, before)


class ShrinkEmbeddings:
    """A toy objective (pull the global views' embeddings to 0): the loop must run it unchanged."""

    def __init__(self, config, steps_per_epoch: int) -> None:
        torch.manual_seed(0)
        self.network = chadavit.create_model(config.model, **dict(config.model_overrides))
        self.backbone = self.network
        self._forward = self.network
        self.after_steps: list[int] = []

    def to(self, device):
        self.network.to(device)
        return self

    def use_forward(self, forward) -> None:
        self._forward = forward

    def param_groups(self):
        return [{"params": list(self.network.parameters()), "apply_wd": True}]

    def loss(self, views, step: int):
        return torch.stack([self._forward(view).pow(2).mean() for view in views.global_views]).mean()

    def adjust_gradients(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        self.after_steps.append(step)

    def step_metrics(self, step: int) -> dict[str, float]:
        return {"after_steps": float(len(self.after_steps))}

    def weight_modules(self):
        return (self.network,)

    def export_backbone(self):
        return self.network

    def state_dict(self):
        return {"student": self.network.state_dict()}

    def load_state_dict(self, state) -> None:
        self.network.load_state_dict(state["student"])


def test_another_objective_runs_in_the_loop_without_a_change_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(OBJECTIVES, "shrink", ShrinkEmbeddings)
    monkeypatch.setitem(RULES, "objective", one_of(*OBJECTIVES))
    write_shards(tmp_path / "data", [8], image_size=64)
    train(tiny_config(tmp_path / "data", tmp_path / "run", objective="shrink", epochs=2))
    metrics = read_metrics(tmp_path / "run")
    assert [m["after_steps"] for m in metrics] == [float(step + 1) for step in range(12)]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["config"]["objective"] == "shrink" and state["step"] == 12
    exported = chadavit.from_pretrained(tmp_path / "run" / "model").state_dict()
    assert all(torch.equal(exported[k], v) for k, v in state["student"].items())
