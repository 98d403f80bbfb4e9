"""The ``dinov2-small`` reference classifier: the converted DINOv2-S/14 backbone plus a
classifier head trained on the cluttered Fashion-MNIST scenes.

The package ships only the head (:data:`HEAD_DIR`: ``config.json``,
``preprocessor_config.json``, ``head.safetensors``, ``metrics.json``, model card
``README.md``, ``samples.npz``). :func:`model_dir` joins it with the backbone from
:func:`captum_gmar.reference.dinov2.backbone_dir` into a complete Hugging Face model
folder in the user cache, named after a hash of both, so it is built once and rebuilt
when the shipped head changes.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import Dinov2Config

from ..imagedata import CLASS_NAMES
from .cache import cache_root, publish_dir
from .dinov2 import BACKBONE_SHA256, backbone_config, backbone_dir

__all__ = ["HEAD_DIR", "HEAD_FILE", "MODEL_FILES", "classifier_config", "model_dir", "processor_config"]

#: The shipped head, image processor config and model card.
HEAD_DIR = Path(__file__).resolve().parent / "dinov2_small"

#: The head's weights in :data:`HEAD_DIR` (``Dinov2ForImageClassification`` names).
HEAD_FILE = "head.safetensors"

#: The files of a head folder that define the model (and the cache folder's hash).
MODEL_FILES = ("config.json", "preprocessor_config.json", HEAD_FILE)

# ImageNet statistics, with which DINOv2 was trained.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def classifier_config() -> Dinov2Config:
    """DINOv2-S/14 with a multi-label head over the Fashion-MNIST classes."""
    config = backbone_config()
    config.architectures = ["Dinov2ForImageClassification"]
    config.num_labels = len(CLASS_NAMES)
    config.id2label = dict(enumerate(CLASS_NAMES))
    config.label2id = {name: i for i, name in enumerate(CLASS_NAMES)}
    config.problem_type = "multi_label_classification"
    return config


def processor_config(size: int) -> dict:
    """``preprocessor_config.json`` of a ``BitImageProcessor`` (DINOv2's processor class)
    that resizes a scene to ``size x size`` (bilinear: up-sampling, so no antialiasing
    question, and PIL and torchvision agree within a grey level), rescales to [0, 1]
    and normalises with ImageNet's mean and std."""
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": 2,  # PIL.Image.BILINEAR
        "do_center_crop": False,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(_MEAN),
        "image_std": list(_STD),
        "do_convert_rgb": False,
    }


def model_dir(head_dir: Path = HEAD_DIR, verbose: bool = True) -> Path:
    """A complete ``Dinov2ForImageClassification`` folder (``config.json``,
    ``preprocessor_config.json``, ``model.safetensors``) in the user cache, built from
    the backbone and the head in ``head_dir`` if it is not there yet.

    Raises:
        ImportError: the backbone is not converted yet and the ``pretrained`` extra is
            not installed.
    """
    digest = hashlib.sha256(BACKBONE_SHA256.encode())
    for name in MODEL_FILES:
        digest.update(name.encode() + b"\0" + (head_dir / name).read_bytes())
    final = cache_root() / f"dinov2-small-{digest.hexdigest()[:12]}"
    if final.is_dir():
        return final
    backbone = backbone_dir(verbose) / "model.safetensors"
    if verbose:
        print(f"captum_gmar: joining {backbone} and {head_dir / HEAD_FILE} into {final}", file=sys.stderr)
    with publish_dir(final) as tmp:
        tensors = {f"dinov2.{name}": value for name, value in load_file(backbone).items()}
        # The head file may also replace backbone tensors (fine-tuned blocks), stored in float16.
        tensors.update({name: value.float() for name, value in load_file(head_dir / HEAD_FILE).items()})
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        for name in MODEL_FILES[:2]:
            shutil.copyfile(head_dir / name, tmp / name)
    return final
