"""One DINO step: schedules reach the optimizer, prototypes stay frozen in epoch 1, the teacher is an EMA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chadavit.data.loader import EpochPlan, ShardSet, make_epoch_loader
from chadavit.data.testing import write_shards
from chadavit.train.distributed import DistContext
from chadavit.train.loop import Trainer
from chadavit.train.testing import tiny_config


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
