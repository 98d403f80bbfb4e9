"""The tiny, randomly initialised models of every supported class the tests run on, and
what each class is expected to do (special tokens, pooling, read-out, attention capture).

A plain module, imported by the tests and by ``conftest.py`` (whose fixtures save and load
these models): tests import their constants from here, never from ``conftest``, which
pytest may register under that name for another folder first.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys

import pytest
import torch


def _make_torchvision_importable() -> list:
    """Let torchvision import where its compiled operators cannot load.

    timm imports torchvision, and so does transformers wherever torchvision is installed.
    The PyPI torchvision wheel is built for CUDA torch; beside a CPU-only torch (as on
    this project's CI machine, where there is no CPU build) its import fails while
    registering fake kernels for two operators it could not load. Declaring those two
    schemas first lets its pure-Python modules, all that timm's ViTs and transformers'
    image utilities use, import. A working torchvision, or none, is left alone. Returns
    the libraries that must stay alive (dropping one unregisters its schemas).
    """
    if importlib.util.find_spec("torchvision") is None:
        return []
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401, F811

        return [library]
    return []


_TORCHVISION_SCHEMAS = _make_torchvision_importable()  # before transformers, which imports torchvision too

import transformers  # noqa: E402

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_LABELS = 5
VISION = dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32, num_hidden_layers=3, num_attention_heads=4)
COMMON = dict(VISION, num_labels=NUM_LABELS)
TEXT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    vocab_size=64,
    max_position_embeddings=16,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)


def _image_text(config_name: str, **extra):
    vision = dict(VISION, intermediate_size=64)
    return lambda: getattr(transformers, config_name)(vision_config=vision, text_config=TEXT, **extra)


def import_timm():
    """timm, or a skip where it is not installed (``pip install "captum-gmar[timm]"``)."""
    return pytest.importorskip("timm", reason="timm is not installed (pip install 'captum-gmar[timm]')")


def _timm_wrapper_config():
    import_timm()
    return transformers.TimmWrapperConfig(
        architecture="vit_tiny_patch16_224",
        model_args=dict(
            img_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=32, depth=3, num_heads=4, global_pool="avg", dynamic_img_size=True
        ),
        num_labels=NUM_LABELS,
    )


#: class name -> config factory
TINY_MODELS = {
    "ViTForImageClassification": lambda: transformers.ViTConfig(**COMMON, intermediate_size=64),
    "DeiTForImageClassification": lambda: transformers.DeiTConfig(**COMMON, intermediate_size=64),
    "DeiTForImageClassificationWithTeacher": lambda: transformers.DeiTConfig(**COMMON, intermediate_size=64),
    "Dinov2ForImageClassification": lambda: transformers.Dinov2Config(**COMMON, mlp_ratio=2),
    "Dinov2WithRegistersForImageClassification": lambda: transformers.Dinov2WithRegistersConfig(
        **COMMON, mlp_ratio=2, num_register_tokens=4
    ),
    "ViTMSNForImageClassification": lambda: transformers.ViTMSNConfig(**COMMON, intermediate_size=64),
    "IJepaForImageClassification": lambda: transformers.IJepaConfig(**COMMON, intermediate_size=64),
    # per-layer relative position bias, mean pooling; Data2Vec: one shared bias, class-token pooling
    "BeitForImageClassification": lambda: transformers.BeitConfig(**COMMON, intermediate_size=64, use_relative_position_bias=True),
    "Data2VecVisionForImageClassification": lambda: transformers.Data2VecVisionConfig(
        **COMMON, intermediate_size=64, use_shared_relative_position_bias=True, use_mean_pooling=False
    ),
    "CLIPForImageClassification": _image_text("CLIPConfig", num_labels=NUM_LABELS),
    "MetaClip2ForImageClassification": _image_text("MetaClip2Config", num_labels=NUM_LABELS),
    "SiglipForImageClassification": _image_text("SiglipConfig", num_labels=NUM_LABELS),
    "TimmWrapperForImageClassification": _timm_wrapper_config,
}

#: special tokens before the patches, per class
PREFIX_TOKENS = {
    "ViTForImageClassification": 1,
    "DeiTForImageClassification": 2,
    "DeiTForImageClassificationWithTeacher": 2,
    "Dinov2ForImageClassification": 1,
    "Dinov2WithRegistersForImageClassification": 5,
    "ViTMSNForImageClassification": 1,
    "IJepaForImageClassification": 0,
    "BeitForImageClassification": 1,
    "Data2VecVisionForImageClassification": 1,
    "CLIPForImageClassification": 1,
    "MetaClip2ForImageClassification": 1,
    "SiglipForImageClassification": 0,
    "TimmWrapperForImageClassification": 1,
}

#: what each classifier reads from the last layer's tokens (read from its forward), as the
#: token groups its pooling averages; readout="model" reads exactly this
POOLING = {
    "ViTForImageClassification": ("class",),
    "DeiTForImageClassification": ("class",),
    "DeiTForImageClassificationWithTeacher": ("class", "distillation"),
    "Dinov2ForImageClassification": ("class", "patches"),
    "Dinov2WithRegistersForImageClassification": ("class", "patches"),
    "ViTMSNForImageClassification": ("class",),
    "IJepaForImageClassification": ("tokens",),
    "BeitForImageClassification": ("patches",),
    "Data2VecVisionForImageClassification": ("class",),
    "CLIPForImageClassification": ("patches",),
    "MetaClip2ForImageClassification": ("patches",),
    "SiglipForImageClassification": ("tokens",),
    "TimmWrapperForImageClassification": ("patches",),
}

#: readout="auto": the model's pooling where it reads one group, else the class token
AUTO_READOUT = {name: pooling if len(pooling) == 1 else ("class",) for name, pooling in POOLING.items()}

MODEL_NAMES = list(TINY_MODELS)

#: one class per kind of attention capture and read-out, for the option-by-option tests
OPTION_MODELS = [
    "ViTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "Dinov2WithRegistersForImageClassification",
    "BeitForImageClassification",
    "Data2VecVisionForImageClassification",
    "SiglipForImageClassification",
]

#: classes whose attention is captured at the kernel (relative position bias, timm)
KERNEL_CAPTURED = ["BeitForImageClassification", "Data2VecVisionForImageClassification", "TimmWrapperForImageClassification"]

#: zero-shot image-text models: class name -> config factory
ZERO_SHOT_MODELS = {
    "CLIPModel": _image_text("CLIPConfig"),
    "MetaClip2Model": _image_text("MetaClip2Config"),
    "SiglipModel": _image_text("SiglipConfig"),
}


def randomise_(model: torch.nn.Module) -> torch.nn.Module:
    """Make read-out and capture bugs visible, in place: special tokens and position
    embeddings initialised to zero or nearly (transformers' DeiT, ViT-MSN and BEiT class
    tokens, DINOv2's registers, timm's class and register tokens ...) get random values
    of ViT's initialisation scale (0.02),
    relative position bias tables (zero too) random values of the scores' scale (1), and
    the query and key weights are brought to a standard deviation of 0.16 (8 times ViT's
    initialisation, as wider-initialised families get too), so that attention is sharp
    enough for the methods' maps to differ."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "relative_position_bias_table" in name:
                param.copy_(torch.randn(param.shape, generator=generator))
            elif any(key in name for key in _SPECIAL) and param.abs().max() < 1e-3:
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
            elif any(key in name for key in ("q_proj", "k_proj", "query", "key")) and param.dim() == 2:
                param.mul_(0.16 / param.std())
            elif name.endswith("qkv.weight"):  # timm: queries and keys are the first two thirds of the rows
                rows = 2 * param.shape[0] // 3
                param[:rows].mul_(0.16 / param[:rows].std())
    return model


_SPECIAL = (
    "cls_token",
    "class_embedding",
    "distillation_token",
    "dist_token",
    "register_tokens",
    "reg_token",
    "position_embedding",
    "pos_embed",
)


def takes_other_sizes(model: torch.nn.Module) -> bool:
    """Whether a classifier can be told to interpolate its position embeddings (4.57's CLIP
    classifiers cannot: their forward takes neither the argument nor ``**kwargs``)."""
    parameters = inspect.signature(model.forward).parameters
    return "interpolate_pos_encoding" in parameters or "kwargs" in parameters


#: additive constants that take relevance away from the pixels (biases, tokens, positions)
_CONSTANTS = (
    "cls_token",
    "class_embedding",
    "distillation_token",
    "register_tokens",
    "position_embedding",
    "mask_token",
    "relative_position_bias_table",
)


def bias_free(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in float64 with every bias, special token and position embedding zeroed, so
    that a conservative propagation gives the target logit to the pixels, all of it."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or any(key in name for key in _CONSTANTS):
                param.zero_()
    return model.double().eval()


def images64(batch: int = 3, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    return torch.randn(batch, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


class DinoV3Classifier(torch.nn.Module):
    """The example of docs/models.md: a linear probe on the class token and the mean patch token."""

    token_pooling = "class+patches"

    def __init__(self, backbone: transformers.DINOv3ViTModel, num_labels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_labels = num_labels
        self.head = torch.nn.Linear(2 * backbone.config.hidden_size, num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(pixel_values=pixel_values).last_hidden_state
        prefix = 1 + self.backbone.config.num_register_tokens
        return self.head(torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], dim=-1))
