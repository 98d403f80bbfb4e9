"""Helpers of the command line's tests: run a command expecting it to exit, make model
folders and earlier results."""

import json
from pathlib import Path

import pytest

from captum_gmar.cli import main
from captum_gmar.files import MANIFEST


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def make_folder(tmp_path, name, architecture, weights=True):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"architectures": ["{architecture}"], "id2label": {{"0": "a"}}, "patch_size": 8}}')
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return str(folder)


def existing_results(tmp_path):
    """An output folder holding the results of an earlier run."""
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "results.csv").write_text("method,item\n")
    (out / MANIFEST).write_text(json.dumps({"files": ["results.csv", "results.run.json", "summary.md", "summary.json", "comparison.png"]}))
    return out


def last_line(err: str) -> str:
    """The error line; transformers' progress bars may come before it."""
    return err.strip().splitlines()[-1]


def explain_scenes(root: Path, methods: list[str]) -> Path:
    """The bundled sample scenes (12 images) written to ``root/scenes`` as an image folder
    and explained by the reference model with ``methods`` into ``root/maps``, every image
    for class 0; returns ``root``."""
    import transformers

    from captum_gmar import explain_dataset, load_reference_model, load_sample_scenes
    from captum_gmar.evaluation.data import open_dataset
    from captum_gmar.imagedata.fashion_mnist import CLASS_NAMES
    from captum_gmar.imagedata.folder import export_scenes

    export_scenes(load_sample_scenes(), root / "scenes", CLASS_NAMES)
    model = load_reference_model()
    processor = transformers.AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    data = open_dataset(root / "scenes", processor, dict(enumerate(CLASS_NAMES)), 64)
    explain_dataset(model, data, methods, root / "maps", target=0, progress=False)
    return root


def explain_two_classes(root: Path, methods: list[str]) -> Path:
    """The bundled sample scenes and their mirror images (16) as an image folder
    ``root/two`` of two classes (T-shirt/top and Trouser, each holding all 16), explained
    by the reference model with ``methods`` into ``root/maps`` for each image's label: each
    class has the other's images to paste its clusters on; returns ``root``."""
    import transformers
    from PIL import Image

    from captum_gmar import explain_dataset, load_reference_model, load_sample_scenes
    from captum_gmar.evaluation.data import open_dataset
    from captum_gmar.imagedata.fashion_mnist import CLASS_NAMES

    scenes = load_sample_scenes().images
    for folder in ("T-shirt-top", "Trouser"):
        (root / "two" / folder).mkdir(parents=True)
        for number, image in enumerate([*scenes, *scenes[:, :, ::-1]]):
            Image.fromarray(image).save(root / "two" / folder / f"{number:02d}.png")
    model = load_reference_model()
    processor = transformers.AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    data = open_dataset(root / "two", processor, dict(enumerate(CLASS_NAMES)), 64)
    explain_dataset(model, data, methods, root / "maps", target="label", progress=False)
    return root
