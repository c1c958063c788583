"""Hostile input: names that try to escape the output folder, pickles that try to run code, and servers
that would listen beyond this machine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import chadavit
from chadavit.data.testing import write_shards
from chadavit.train.testing import tiny_cli_args
from chadavit_bench.datasets import LOADERS
from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic
from chadavit_bench.embed import EmbedSetting, channel_targets, extract_embeddings
from chadavit_bench.models import load_model, parse_model_spec
from chadavit_bench.testing import TINY_CHADAVIT
from idrcell.emulator import EmulatorServer

# The raw-opcode payloads of the model tests (a GLOBAL then BUILD on it), loaded rather than copied.
_spec = importlib.util.spec_from_file_location(
    "chadavit_hub_tests", Path(__file__).resolve().parents[1] / "chadavit" / "test_model_hub.py"
)
assert _spec is not None and _spec.loader is not None
hub_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_tests)


class Exploit:
    """Unpickling this creates `target`: the proof that a loader ran code from a file."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_hostile_names_from_the_server_never_write_outside_the_output_folder(
    tmp_path: Path, isolated_cwd: Path, rel
) -> None:
    # The hostile catalogue's names hold ../, absolute paths (/etc/shadow, /absolute/plate), '/', NUL,
    # newlines, right-to-left marks, 300-400 character and unicode names (docs/emulator.md).
    out = tmp_path / "box" / "out"
    out.parent.mkdir()
    absolute_targets = [Path("/absolute"), Path("/tmp/escape"), Path("/escape.tif")]
    assert not any(path.exists() for path in absolute_targets)
    watched = Path("/etc/passwd").stat().st_mtime_ns
    before = files_under(tmp_path)
    with EmulatorServer("hostile") as server:
        listing = rel.packaged_list("hostile")
        done = subprocess.run(
            rel.command("idrcell", "build", "-e", listing, "-o", out),
            env=rel.cli_env(server.base_url),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verified = subprocess.run(rel.command("idrcell", "verify", out), capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    created = files_under(tmp_path) - before
    outside = [p for p in created if out not in p.parents and p != out]
    assert not outside, outside  # nothing beside OUT, in the working directory or above
    assert not any(path.exists() for path in absolute_targets)
    assert Path("/etc/passwd").stat().st_mtime_ns == watched
    for path in created - {out}:
        for part in path.relative_to(out).parts:
            assert part.isascii() and part.isprintable() and ".." not in part and len(part) < 100, part
    assert len(list((out / "shards").glob("*.tar"))) >= 1


def test_training_checkpoints_are_loaded_without_running_pickled_code(tmp_path: Path, rel) -> None:
    marker = tmp_path / "code-was-executed"
    evil = {"format": "chadavit-train-checkpoint-v1", "step": 1, "payload": Exploit(marker)}
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("last.pt", "prev.pt"):
        torch.save(evil, run_dir / "checkpoints" / name)
    write_shards(tmp_path / "data", [4], channel_counts=(1, 2), image_size=64)
    args = tiny_cli_args(tmp_path / "data", run_dir, epochs=1)
    resumed = subprocess.run(
        rel.command("chadavit-train", *args, "--resume", "auto"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    message = rel.one_line_error(resumed)
    assert resumed.returncode != 0 and "no usable checkpoint in" in message, message
    exported = subprocess.run(
        rel.command("chadavit-train", "export", run_dir / "checkpoints" / "last.pt", "--out", tmp_path / "m"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    message = rel.one_line_error(exported)
    assert exported.returncode != 0 and "cannot be read" in message and "os.makedirs" in message, message
    assert "weights_only" not in message  # never torch's advice to load the file unrestricted
    assert not (tmp_path / "m").exists()
    assert not marker.exists()  # neither command unpickled the payload


def test_a_released_checkpoint_with_a_payload_is_refused_without_running_it(tmp_path: Path, rel) -> None:
    marker = tmp_path / "code-was-executed"
    checkpoint = tmp_path / "evil.ckpt"
    # Everything pickled, and the payload in place of a weight: no object of the file is ever called.
    torch.save({"state_dict": {"backbone.cls_token": Exploit(marker)}, "hyper_parameters": Exploit(marker)},
               checkpoint)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"cannot read checkpoint .*evil\.ckpt: refused: it refers to os\.makedirs"
    ):
        chadavit.load_released_checkpoint(checkpoint)
    data = tmp_path / "data"
    write_synthetic(data, ["cyclops"], SyntheticConfig(image_size=16))
    args = ["run", "knn", "-m", checkpoint, "--data-root", data, "-o", tmp_path / "out", "-d", "cyclops"]
    result = subprocess.run(rel.command("chadavit-bench", *args, "--quick"), capture_output=True, text=True)
    message = rel.one_line_error(result)
    assert result.returncode == 2 and str(checkpoint) in message, message
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_checkpoint_that_would_rewrite_torch_leaves_the_next_model_intact(tmp_path: Path, rel) -> None:
    # The case: evil.ckpt set torch._utils._rebuild_tensor_v2.__defaults__ while being refused,
    # and every later weights-only load in the process returned negated tensors.
    torch.manual_seed(0)
    student = chadavit.create_model(
        "chadavit_moyen_v1", embed_dim=32, depth=2, num_heads=2, img_size=64, ffn_dim=64
    )
    state = {f"backbone.{name}": tensor for name, tensor in student.state_dict().items()}
    good, evil = tmp_path / "good.ckpt", tmp_path / "evil.ckpt"
    torch.save({"state_dict": state}, good)
    payload = hub_tests.PAYLOADS["a function's __defaults__"]
    torch.save(
        {"state_dict": state | {"backbone.cls_token": payload}}, evil, pickle_module=hub_tests._RAW_PICKLE
    )

    with pytest.raises(ValueError, match=r"evil\.ckpt: refused"):
        load_model(parse_model_spec(str(evil)))  # what chadavit-bench does for each --model, in order
    loaded = load_model(parse_model_spec(str(good)))
    for name, tensor in student.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name

    data = tmp_path / "data"
    write_synthetic(data, ["cyclops"], SyntheticConfig(image_size=16))
    args = [
        "run",
        "knn",
        "-m",
        evil,
        "-m",
        good,
        "--data-root",
        data,
        "-o",
        tmp_path / "out",
        "-d",
        "cyclops",
    ]
    result = subprocess.run(rel.command("chadavit-bench", *args, "--quick"), capture_output=True, text=True)
    message = rel.one_line_error(result)
    assert result.returncode == 2 and str(evil) in message and "weights_only" not in message, message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("broken", ["model.safetensors", "config.json"])
def test_a_model_directory_with_a_broken_file_is_one_line_naming_it(tmp_path: Path, rel, broken) -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", embed_dim=32, depth=1, num_heads=2, img_size=16)
    directory = model.save_pretrained(tmp_path / "model")
    (directory / broken).write_bytes(b"")
    data = tmp_path / "data"
    write_synthetic(data, ["cyclops"], SyntheticConfig(image_size=16))
    args = ["run", "knn", "-m", directory, "--data-root", data, "-o", tmp_path / "out", "-d", "cyclops"]
    result = subprocess.run(rel.command("chadavit-bench", *args, "--quick"), capture_output=True, text=True)
    message = rel.one_line_error(result)
    assert result.returncode == 2 and str(directory / broken) in message, message


def test_bench_caches_never_unpickle(tmp_path: Path) -> None:
    marker = tmp_path / "code-was-executed"
    data = tmp_path / "data"
    write_synthetic(data, ["nfkb"], SyntheticConfig(image_size=16))
    dataset = LOADERS["nfkb"](data)
    loaded = load_model(parse_model_spec(TINY_CHADAVIT))
    cache = tmp_path / "cache"
    setting = EmbedSetting(img_size=16)
    clean = extract_embeddings(loaded.model, loaded.checksum, dataset, setting, cache, batch_size=64)
    (cached,) = cache.glob("nfkb-*.npz")
    payload = np.empty(1, dtype=object)
    payload[0] = Exploit(marker)
    with open(cached, "wb") as handle:
        np.savez(handle, keys=payload, cls=payload, tokens=payload)
    # The poisoned entry is ignored (with a warning) and computed again, and its payload never runs.
    again = extract_embeddings(loaded.model, loaded.checksum, dataset, setting, cache, batch_size=64)
    np.testing.assert_array_equal(again.cls, clean.cls)
    with np.load(cached, allow_pickle=False) as replaced:
        assert replaced["cls"].dtype == np.float32
    # The reconstruction targets' cache too: poisoned or truncated, it is computed again and replaced.
    channel = dataset.channel_names[0]
    expected = channel_targets(dataset, channel, 16, cache, workers=1)
    (targets,) = cache.glob("nfkb-target-*.npz")
    with open(targets, "wb") as handle:
        np.savez(handle, targets=payload)
    np.testing.assert_array_equal(channel_targets(dataset, channel, 16, cache, workers=1), expected)
    targets.write_bytes(targets.read_bytes()[:100])
    np.testing.assert_array_equal(channel_targets(dataset, channel, 16, cache, workers=1), expected)
    with np.load(targets, allow_pickle=False) as replaced:
        np.testing.assert_array_equal(replaced["targets"], expected)
    assert not marker.exists()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_emulator_listens_on_the_loopback_address_only(rel) -> None:
    with EmulatorServer("tiny") as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex
    process = subprocess.Popen(
        rel.command("idrcell", "emulator", "--catalogue", "tiny", "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        url = process.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:"), url
        assert _listening_addresses(int(url.rsplit(":", 1)[1])) == {"0100007F"}
    finally:
        watchdog.cancel()
        process.terminate()
        process.communicate(timeout=30)
