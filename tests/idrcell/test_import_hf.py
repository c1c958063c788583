"""`idrcell import-hf`: the authors' per-channel PNG layout becomes the same shards and index."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.importhf import import_hf
from idrcell.shards import read_tar
from idrcell.verify import verify_dataset

CATALOGUE = (
    "Study\tContainer\tIntroduced\tInternal ID\tSample Type\n"
    "idr0002-heriche-condensation\tscreenA\tdemo2\t102\tcell\n"
    "idr0003-breker-plasticity\tscreenA\tdemo1\t51\tcell\n"
    "idr0009-simpson-secretion\texperimentA\tdemo1\t102\tcell\n"  # a project id equal to a screen id
)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_layout(root: Path) -> dict[str, bytes]:
    """Two parts; image 5 split across them with channels 0, 1, 2 and 10; other odd inputs."""
    rng = np.random.default_rng(0)
    files = {
        "part_0/screen_102_5_0.png": png(rng.integers(0, 255, (224, 224), dtype=np.uint8)),
        "part_0/screen_102_5_10.png": png(rng.integers(0, 255, (224, 224), dtype=np.uint8)),
        "part_1/screen_102_5_2.png": png(rng.integers(0, 255, (224, 224), dtype=np.uint8)),
        "part_1/screen_102_5_1.png": png(rng.integers(0, 255, (224, 224), dtype=np.uint8)),
        "part_1/screen_51_7_0.png": png(rng.integers(0, 65535, (300, 200), dtype=np.uint16)),
        "part_1/screen_999_8_0.png": png(rng.integers(0, 255, (180, 260, 3), dtype=np.uint8)),
        "part_1/notes.txt": b"not an image",
    }
    for relative, data in files.items():
        path = root / "imgs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_import_groups_channels_by_image_and_verifies(tmp_path: Path) -> None:
    files = make_layout(tmp_path / "hf")
    (tmp_path / "studies.tsv").write_text(CATALOGUE, encoding="utf-8")
    out = tmp_path / "out"
    result = import_hf(tmp_path / "hf", out, catalogue=tmp_path / "studies.tsv")
    assert (result.images, result.ignored_files, result.summary.samples) == (3, 1, 3)
    report = verify_dataset(out)
    assert report.ok, report.problems
    samples = {}
    for shard in (out / "shards").glob("*.tar"):
        members = read_tar(shard)
        for name, data in members:
            key = name.split(".")[0]
            samples.setdefault(key, []).append((name, data))
    heriche = samples["idr0002-heriche-condensation_screenA_5"]
    meta = json.loads(heriche[0][1])
    assert (
        meta["study"] == "idr0002-heriche-condensation" and meta["image_id"] == 5 and meta["n_channels"] == 4
    )
    assert meta["imaging_method"] is None and meta["source"]["width"] is None
    # Channels in numeric order (0, 1, 2, 10); already-conforming PNGs are kept byte for byte.
    expected = [files[f"part_{p}/screen_102_5_{c}.png"] for p, c in ((0, 0), (1, 1), (1, 2), (0, 10))]
    assert [data for _, data in heriche[1:]] == expected
    assert json.loads(samples["idr0003-breker-plasticity_screenA_7"][0][1])["n_channels"] == 1
    unknown = json.loads(samples["screen-999_screen_8"][0][1])
    assert (unknown["study"], unknown["container"]) == ("screen-999", "screen")
    again = import_hf(tmp_path / "hf", out, catalogue=tmp_path / "studies.tsv")
    assert again.already_done


def test_the_cli_rejects_a_folder_without_the_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import-hf", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no imgs/ folder" in result.output
    assert not (tmp_path / "out").exists()
