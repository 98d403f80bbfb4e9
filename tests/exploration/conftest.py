"""Fixtures of the exploration tests: a real job's maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers

from captum_gmar import explain_dataset, load_reference_model, load_sample_scenes


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """A real job: the bundled sample scenes (12 images) explained by the reference model
    with GMAR and rollout, every image for class 0 (one group of 12 maps per method)."""
    from captum_gmar.evaluation.data import open_dataset
    from captum_gmar.imagedata.fashion_mnist import CLASS_NAMES
    from captum_gmar.imagedata.folder import export_scenes

    root = tmp_path_factory.mktemp("job")
    export_scenes(load_sample_scenes(), root / "scenes", CLASS_NAMES)
    model = load_reference_model()
    processor = transformers.AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    data = open_dataset(root / "scenes", processor, dict(enumerate(CLASS_NAMES)), 64)
    explain_dataset(model, data, ["gmar-l1", "rollout"], root / "maps", target=0, progress=False)
    return root / "maps"
