"""The project's front door: a license that matches the packages' metadata, a citation file that
cites the paper, and README links to the paper, the authors' code, the weights and every
downstream dataset the bench reads."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_license_file_matches_the_packages_declared_license() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    for pyproject in sorted((ROOT / "packages").glob("*/pyproject.toml")):
        declared = tomllib.loads(pyproject.read_text())["project"]["license"]["text"]
        assert declared == "MIT", pyproject


def test_citation_file_cites_the_paper() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("ChAda-ViT: Channel Adaptive Attention")
    assert paper["authors"][0]["family-names"] == "Bourriez"
    assert paper["year"] == 2024
    assert cff["license"] == "MIT"


def test_readme_links_paper_code_weights_and_every_bench_dataset() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in (
        "arxiv.org/abs/2311.15264",
        "github.com/nicoboou/chadavit",
        "huggingface.co/nicoboou/chadavit16-moyen",
        "e8a24ac58b8e34bdce10e0024d507f2e",
    ):
        assert needle in readme, needle
    sources = readme.split("Downstream datasets for `chadavit-bench`", 1)[1]
    for dataset in ("BloodMNIST", "CyclOPS", "BBBC048", "NF-kB", "BBBC021", "Bray", "CHAMMI"):
        assert f"| {dataset}" in sources, dataset
