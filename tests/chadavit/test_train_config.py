"""Every config value is checked for type and range before a run starts; non-finite numbers stop a run."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from chadavit.data.testing import write_shards
from chadavit.ssl.dino import DinoObjective
from chadavit.train.cli import NOT_CONFIG_FIELDS, main
from chadavit.train.config import RULES, ConfigError, TrainConfig, config_key, load_config
from chadavit.train.loop import TrainingError, train
from chadavit.train.testing import tiny_config


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("optim.base_lr", -1, "optim.base_lr must be > 0, got -1"),
        ("optim.base_lr", float("nan"), "optim.base_lr must be a finite number, got nan"),
        ("optim.min_lr", float("inf"), "optim.min_lr must be a finite number"),
        ("dino.out_dim", 0, "dino.out_dim must be in [1, "),
        ("dino.teacher_temp", -1, "dino.teacher_temp must be > 0"),
        ("dino.center_momentum", 2, "dino.center_momentum must be in [0, 1], got 2"),
        ("data.group_by_channels", "no", "data.group_by_channels must be true or false, got 'no'"),
        ("data.batch_size", 2.5, "data.batch_size must be a whole number >= 1, got 2.5"),
        ("data.batch_size", True, "data.batch_size must be a whole number"),
        ("epochs", 10**400, "epochs must be in [1, 100000]"),
        ("optim.betas", [0.9], "optim.betas must be a list of 2 values"),
        ("optim.betas", [0.9, 1.0], "optim.betas[1] must be in [0, 1)"),
        ("augment.hflip_p", "half", "augment.hflip_p must be a number in [0, 1], got 'half'"),
        ("precision", "fp8", "precision must be one of auto, fp32, bf16, fp16, got 'fp8'"),
        ("model_overrides", {"drop_path_rate": float("nan")}, "model_overrides.drop_path_rate"),
        ("model_overrides", {"embed_dim": 0}, "model_overrides: "),
        ("seed", "x", "seed must be a whole number"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_its_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        TrainConfig().with_overrides({key: value})
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_numbers_are_converted_where_the_meaning_is_unambiguous() -> None:
    # PyYAML reads 1e-4 (no dot) as a string; an int is a float; a list is a tuple.
    config = TrainConfig().with_overrides(
        {"optim.base_lr": "1e-4", "optim.min_lr": 0, "optim.betas": [0.5, 0.9]}
    )
    assert config.optim.base_lr == 1e-4 and isinstance(config.optim.min_lr, float)
    assert config.optim.betas == (0.5, 0.9)


def test_a_config_made_in_python_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="epochs must be in"):
        TrainConfig(epochs=0)


def _leaves(cls: type, where: str = "") -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        key = f"{where}.{spec.name}" if where else spec.name
        if dataclasses.is_dataclass(hints[spec.name]):
            found.update(_leaves(hints[spec.name], key))
        else:
            found[key] = hints[spec.name]
    return found


def test_every_number_and_every_choice_has_a_declared_rule() -> None:
    leaves = _leaves(TrainConfig)
    # Paths are checked against the filesystem, model overrides by the model's own configuration.
    free = {"data_dir", "out_dir", "resume", "model_overrides", "data.channel_vocab"}
    numeric = {
        key
        for key, hint in leaves.items()
        if key not in free and any(t in (int, float, str) for t in (hint, *typing.get_args(hint)))
    }
    assert sorted(numeric - set(RULES)) == []
    assert sorted(set(RULES) - set(leaves)) == []  # no rule for a field that is gone


def test_each_cli_option_sets_the_one_config_field_of_its_name() -> None:
    options = [name for name in inspect.signature(main).parameters if name not in (*NOT_CONFIG_FIELDS, "ctx")]
    keys = {name: config_key(name) for name in options}
    assert keys["batch_size"] == "data.batch_size" and keys["base_lr"] == "optim.base_lr"
    assert keys["n_local_crops"] == "augment.n_local_crops" and keys["data_dir"] == "data_dir"
    assert all(key in _leaves(TrainConfig) for key in keys.values())


def test_a_config_file_names_itself_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("dino:\n  teacher_temp: .nan\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: dino\.teacher_temp must be a finite number"):
        load_config(tmp_path / "run.yaml")
    (tmp_path / "broken.yaml").write_text("data: [\n")
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "broken.yaml")
    assert "broken.yaml is not valid YAML" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("overrides", [{}, {"data__steps_per_epoch": 3}])
def test_a_batch_larger_than_a_ranks_samples_is_refused_before_anything_is_written(
    tmp_path: Path, overrides: dict
) -> None:
    # With a fixed epoch length the loader would fill it by repeating 12 samples: a run that hangs.
    write_shards(tmp_path / "data", [6, 6], image_size=64)
    config = tiny_config(tmp_path / "data", tmp_path / "run", data__batch_size=1_000_000, **overrides)
    with pytest.raises(ConfigError, match=r"data\.batch_size 1000000 is larger than the 12 samples"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_a_config_changed_after_it_was_made_is_checked_before_the_run(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [8], image_size=64)
    config = tiny_config(tmp_path / "data", tmp_path / "run")
    object.__setattr__(config.optim, "base_lr", float("nan"))  # frozen, but Python lets you
    with pytest.raises(ConfigError, match=r"optim\.base_lr must be a finite number"):
        train(config)
    assert not (tmp_path / "run").exists()


def strict_lines(path: Path) -> list[dict]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_a_loss_that_is_not_finite_stops_the_run_naming_the_step(tmp_path: Path) -> None:
    write_shards(tmp_path / "data", [8], image_size=64)
    # A valid but absurd learning rate: the first update throws the weights to ~1e28, the next loss is NaN.
    config = tiny_config(tmp_path / "data", tmp_path / "run", optim__base_lr=1e30, save_every=100)
    with pytest.raises(TrainingError, match=r"the loss is nan at step 1 \(epoch 0\)"):
        train(config)
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert [m["step"] for m in strict_lines(tmp_path / "run" / "metrics.jsonl")] == [0]


def test_weights_that_are_not_finite_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_shards(tmp_path / "data", [8], image_size=64)
    original = DinoObjective.after_step

    def poisoned(self: DinoObjective, step: int) -> None:
        original(self, step)
        next(self.teacher.parameters()).data.fill_(float("nan"))  # the loss never sees the teacher's NaN
        # ... until the next step; the save after this one must refuse first.

    monkeypatch.setattr(DinoObjective, "after_step", poisoned)
    config = tiny_config(tmp_path / "data", tmp_path / "run", save_every=1)
    with pytest.raises(TrainingError, match="weights hold NaN or infinite values after step 0"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "model").exists()
