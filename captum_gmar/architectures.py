"""What the package knows about each supported model family.

For every supported class: where its vision transformer sits (the module holding the
patch embedding and the attention blocks), its special tokens, what its classifier reads
from the last layer's tokens (its pooling, from which the read-out row ``p`` is built),
how its attention is captured, and how to get its logits. Nothing here changes the
model; only a zero-shot model's text tower runs, once (see :mod:`captum_gmar.zero_shot`).

Two ways of capturing the attention (see :mod:`captum_gmar.capture`):

- ``"projections"``: the attention is ``softmax(q k^T s)`` of the query and key
  projections' outputs, so hooks on the projections suffice (ViT, DeiT, DINOv2, ViT-MSN,
  I-JEPA, CLIP, MetaCLIP 2, SigLIP).
- ``"kernel"``: the scores get a relative position bias (BEiT, Data2Vec-Vision) or the
  queries and keys are rotated after the projections (DINOv3 and EVA's RoPE), so what the
  attention kernel itself received is captured (timm models too, whose fused ``qkv``
  projection and query/key norms make this the simpler way).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import torch
from torch import Tensor, nn

from .errors import UnsupportedModelError
from .model_state import unwrap_model
from .names import (
    BACKBONE_MODEL_CLASSES,
    EMBEDDING_MODEL_CLASSES,
    SUPPORTED_FAMILIES,
    SUPPORTED_MODEL_CLASSES,
    TIMM_MODEL_CLASSES,
    ZERO_SHOT_MODEL_CLASSES,
)
from .zero_shot import Prompts, ZeroShotHead, image_features

#: A group of tokens a classifier can read: the class token, the distillation token
#: (DeiT), the mean of the patch tokens, the mean of all tokens, or the attention of an
#: attention-pooling head over the tokens (SigLIP's image embedding; mean over its heads).
TokenGroup = Literal["class", "distillation", "patches", "tokens", "probe"]
#: What a classifier reads from the last layer's tokens: the average, with equal weights,
#: of these groups (each itself an average over its tokens).
Pooling = tuple[TokenGroup, ...]
CaptureKind = Literal["projections", "kernel"]
#: A transformers or timm model, or a part of one: its submodules and configuration are
#: found by name at run time (``model.config``, ``model.vision_model``, timm's
#: ``patch_embed``), which :class:`torch.nn.Module`'s annotations cannot follow.
ForeignModule = Any
#: ``"auto"``: the model's own pooling where it reads one group of tokens, else the class
#: token; ``"cls"``: the class token; ``"model"``: the model's own pooling.
Readout = Literal["auto", "cls", "model"]


@dataclass(frozen=True)
class AttentionBlock:
    """One self-attention block.

    ``attention`` computes ``softmax(q k^T s + b) V`` for all heads; its first input is the
    normalised tokens. ``output`` is the module whose input is the heads' outputs
    concatenated, ``(B, T, H * d)`` (``o_proj``/``out_proj`` in transformers 5,
    ``attention.output.dense`` in 4.x, timm's ``attn.norm`` before ``attn.proj``).
    ``query``, ``key``, ``value`` and ``scaling`` are the projections and the score scale,
    set where the attention can be rebuilt from them.
    """

    attention: nn.Module
    output: nn.Module
    num_heads: int
    query: nn.Module | None = None
    key: nn.Module | None = None
    value: nn.Module | None = None
    scaling: float | None = None


@dataclass(frozen=True)
class Architecture:
    """A supported model as this package sees it."""

    #: family name for messages and docs, e.g. ``"BEiT"``
    family: str
    #: the vision transformer: patch embedding and attention blocks
    vision: nn.Module
    capture: CaptureKind
    #: what the classifier reads, or ``None`` where it is not an average of tokens
    pooling: Pooling | None
    #: the pooling in words, for messages
    pooling_name: str
    #: tokens before the patches: class token, distillation or register tokens
    num_prefix_tokens: int
    has_class_token: bool
    patch_size: tuple[int, int]
    #: the size the model was trained at (position embeddings), or ``None`` if unknown
    image_size: tuple[int, int] | None
    num_channels: int
    hidden_size: int
    num_layers: int
    num_labels: int
    #: ``pixel_values (B, C, H, W) -> logits (B, K)``, Captum's forward_func
    logits: Callable[[Tensor], Tensor]
    #: the attention-pooling head whose attention is the ``"probe"`` group, if any
    probe: nn.Module | None = None

    def blocks(self) -> list[AttentionBlock]:
        """The attention blocks as the model has them now, first layer first."""
        return find_attention_blocks(self.vision)

    def attention_is_eager(self) -> bool:
        """Whether the attention computes its probabilities as a tensor (eager attention,
        timm without fused attention), rather than in an sdpa or flash kernel."""
        config = getattr(self.vision, "config", None)
        if config is not None:
            return getattr(config, "_attn_implementation", "eager") == "eager"
        return not all(getattr(block.attention, "fused_attn", True) for block in self.blocks())

    def readout_pooling(self, readout: Readout) -> Pooling:
        """The token groups read for ``readout`` (see :data:`Readout`).

        Raises:
            ValueError: for an unknown ``readout``, ``"cls"`` on a model without class
                token, or ``"model"`` on a model whose pooling is not an average of tokens.
        """
        name = self.family
        if readout == "cls" or (readout == "auto" and (self.pooling is None or len(self.pooling) > 1)):
            if not self.has_class_token:
                raise ValueError(
                    f"this {name} model has no class token (its classifier reads {self.pooling_name}), so there is no "
                    f"class-token row to read; use readout='model'"
                    if self.pooling is not None
                    else f"this {name} model has no class token and pools its tokens with {self.pooling_name}, "
                    "which is not an average of tokens: there is no read-out row for it"
                )
            return ("class",)
        if readout in ("model", "auto"):
            if self.pooling is None:
                raise ValueError(
                    f"this {name} model pools its tokens with {self.pooling_name}, which is not an average of tokens; use readout='cls'"
                )
            return self.pooling
        raise ValueError(f"readout must be 'auto', 'cls' or 'model', got {readout!r}")


def pooling_spans(pooling: Pooling, num_prefix_tokens: int, num_tokens: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` token ranges of the groups of ``pooling`` (all but ``"probe"``)."""
    spans = {"class": (0, 1), "distillation": (1, 2), "patches": (num_prefix_tokens, num_tokens), "tokens": (0, num_tokens)}
    return [spans[group] for group in pooling if group != "probe"]


def parse_pooling(spec: str) -> Pooling:
    """``"class+patches"`` -> ``("class", "patches")``, checked against :data:`TokenGroup`."""
    groups = tuple(part.strip() for part in spec.split("+"))
    allowed = [group for group in get_args(TokenGroup) if group != "probe"]  # the probe is SigLIP's pooling head's
    if any(group not in allowed for group in groups) or len(set(groups)) != len(groups):
        raise ValueError(f"token_pooling must be '+'-joined distinct groups among {', '.join(allowed)}; got {spec!r}")
    return cast(Pooling, groups)  # each group checked above


def describe(model: nn.Module, text: Prompts | None = None) -> Architecture:
    """The :class:`Architecture` of a supported model.

    Args:
        model: an unwrapped model (see :func:`captum_gmar.model_state.unwrap_model`).
        text: tokenized prompts, for the zero-shot models (:data:`ZERO_SHOT_MODEL_CLASSES`)
            only.

    Raises:
        UnsupportedModelError: if the model is none of the supported kinds.
        ValueError: if ``text`` is missing for a zero-shot model or given for another.
    """
    if isinstance(model, EmbeddingHead):
        if text is not None:
            raise ValueError(f"text prompts are for zero-shot image-text models, not for {type(model).__name__}, a head on an embedding")
        return _embedding_head(model)
    hf: ForeignModule = model
    names = _transformers_names(model)
    zero_shot = names & set(ZERO_SHOT_MODEL_CLASSES)
    if text is not None and not zero_shot:
        raise ValueError(
            f"text prompts are for zero-shot image-text models ({', '.join(ZERO_SHOT_MODEL_CLASSES)}), not for {type(model).__name__}"
        )
    if zero_shot:
        if text is None:
            raise ValueError(
                f"{type(model).__name__} is explained zero-shot: pass the tokenized prompts as text= "
                "(e.g. processor(text=prompts, padding=True, return_tensors='pt')); the target is a prompt's index"
            )
        head = ZeroShotHead(model, text)
        family, pooling = _ZERO_SHOT[zero_shot.pop()]
        probe = hf.vision_model.head.attention if pooling == ("probe",) else None
        return _hf(model, hf.vision_model, family, pooling, "projections", head.num_labels, head.logits, probe=probe)
    if "TimmWrapperForImageClassification" in names:
        return _timm(hf.timm_model, hf.config.num_labels, "timm (TimmWrapper)", _output_logits(model))
    for name, (family, tower, pooling_of, capture) in _CLASSIFIERS.items():
        if name in names:
            vision = hf.vision_model if tower == "vision_model" else hf.base_model
            return _hf(model, vision, family, pooling_of(vision.config), capture, hf.config.num_labels, _hf_logits(model, vision))
    if _is_timm(model):
        if hf.num_classes == 0:
            raise UnsupportedModelError(
                f"this timm {type(model).__name__} has no classifier (num_classes=0) and returns an embedding: pass "
                "references= (K reference embeddings, e.g. from captum_gmar.similarity.embed_images) to explain its "
                "similarity to each"
            )
        return _timm(model, hf.num_classes, "timm", model)
    backbone = _find_backbone(model)
    if backbone is not None:
        return _custom_head(model, backbone)
    name = type(model).__name__
    if names & set(EMBEDDING_MODEL_CLASSES):
        raise UnsupportedModelError(
            f"{name} returns an embedding, not class logits: pass references= (K reference embeddings, e.g. from "
            "captum_gmar.similarity.embed_images) to explain its similarity to each, or put your head on it "
            "(see docs/models.md)"
        )
    why = " (its windowed attention has no global token-to-token map to roll out)" if "swin" in name.lower() else ""
    raise UnsupportedModelError(
        f"{name} is not a supported vision transformer{why}. Supported: {SUPPORTED_FAMILIES} image classifiers "
        f"({', '.join(SUPPORTED_MODEL_CLASSES)}), also inside peft or torch.compile; zero-shot "
        f"{', '.join(ZERO_SHOT_MODEL_CLASSES)} with text prompts; timm {', '.join(TIMM_MODEL_CLASSES)}; and your own "
        f"head on a {', '.join(BACKBONE_MODEL_CLASSES)}; the embeddings of {', '.join(EMBEDDING_MODEL_CLASSES)} with "
        "references= (see docs/models.md)."
    )


def find_attention_blocks(vision: nn.Module) -> list[AttentionBlock]:
    """Attention blocks of a vision transformer, first layer first.

    transformers 5 names the projections ``q_proj/k_proj/v_proj`` and ``o_proj`` (CLIP and
    SigLIP: ``out_proj``) on one module; 4.x has ``attention.{query,key,value}`` and
    ``output.dense`` under an outer module; timm has a fused ``qkv`` (or ``q_proj`` ...)
    and ``proj``, with ``norm`` between the heads' outputs and ``proj``.
    """
    blocks = []
    modules: list[ForeignModule] = list(vision.modules())
    for module in modules:
        if all(hasattr(module, n) for n in ("q_proj", "k_proj", "v_proj")) and hasattr(module, "o_proj") | hasattr(module, "out_proj"):
            output = module.o_proj if hasattr(module, "o_proj") else module.out_proj
            blocks.append(_hf_block(module, module.q_proj, module.k_proj, module.v_proj, output))
        elif hasattr(module, "output") and hasattr(getattr(module, "attention", None), "query"):
            inner = module.attention
            blocks.append(_hf_block(inner, inner.query, inner.key, inner.value, module.output.dense))
        elif hasattr(module, "proj") and hasattr(module, "fused_attn") and (hasattr(module, "qkv") or hasattr(module, "q_proj")):
            # timm's Attention and EvaAttention (not the latent query of an attention-pooling head)
            blocks.append(AttentionBlock(module, getattr(module, "norm", module.proj), module.num_heads))
    return blocks


def _hf_block(attention: ForeignModule, query: ForeignModule, key: nn.Module, value: nn.Module, output: nn.Module) -> AttentionBlock:
    heads = int(getattr(attention, "num_attention_heads", None) or attention.num_heads)
    head_dim = query.out_features // heads
    scaling = float(getattr(attention, "scaling", None) or getattr(attention, "scale", None) or head_dim**-0.5)
    return AttentionBlock(attention, output, heads, query, key, value, scaling)


def _class_token(config: Any) -> Pooling:
    return ("class",)


def _patch_mean(config: Any) -> Pooling:
    return ("patches",)


def _token_mean(config: Any) -> Pooling:
    return ("tokens",)


def _beit_pooling(config: Any) -> Pooling:
    # BeitPooler / Data2VecVisionPooler: mean of tokens[1:] (layer-normed) or the class token
    return ("patches",) if config.use_mean_pooling else ("class",)


#: classifier class -> (family, where the vision transformer is, its pooling from the config, capture)
_CLASSIFIERS: dict[str, tuple[str, str, Callable[[object], Pooling], CaptureKind]] = {
    "ViTForImageClassification": ("ViT", "base", _class_token, "projections"),
    "DeiTForImageClassification": ("DeiT", "base", _class_token, "projections"),
    "DeiTForImageClassificationWithTeacher": ("DeiT", "base", lambda config: ("class", "distillation"), "projections"),
    "Dinov2ForImageClassification": ("DINOv2", "base", lambda config: ("class", "patches"), "projections"),
    "Dinov2WithRegistersForImageClassification": ("DINOv2", "base", lambda config: ("class", "patches"), "projections"),
    "ViTMSNForImageClassification": ("ViT-MSN", "base", _class_token, "projections"),
    "IJepaForImageClassification": ("I-JEPA", "base", _token_mean, "projections"),
    "BeitForImageClassification": ("BEiT", "base", _beit_pooling, "kernel"),
    "Data2VecVisionForImageClassification": ("Data2Vec-Vision", "base", _beit_pooling, "kernel"),
    "CLIPForImageClassification": ("CLIP", "vision_model", _patch_mean, "projections"),
    "MetaClip2ForImageClassification": ("MetaCLIP 2", "vision_model", _patch_mean, "projections"),
    "SiglipForImageClassification": ("SigLIP", "vision_model", _token_mean, "projections"),
}

#: zero-shot class -> (family, what its image embedding reads)
_ZERO_SHOT: dict[str, tuple[str, Pooling]] = {
    "CLIPModel": ("CLIP", ("class",)),  # visual_projection(post_layernorm(class token))
    "MetaClip2Model": ("MetaCLIP 2", ("class",)),
    "SiglipModel": ("SigLIP", ("probe",)),  # the attention-pooling head's probe
}

#: backbone class -> (family, capture); see "Your own head" in docs/models.md
_BACKBONES: dict[str, tuple[str, CaptureKind]] = {
    "DINOv3ViTModel": ("DINOv3", "kernel"),
    "ViTModel": ("ViT", "projections"),
    "Dinov2Model": ("DINOv2", "projections"),
    "Dinov2WithRegistersModel": ("DINOv2", "projections"),
}

#: embedding model class -> (family, its embedding's pooling from the config, capture, the
#: output field holding the embedding, the config field of its width); the vision
#: transformer is the model's ``vision_model`` where it has one (CLIP's and SigLIP's
#: towers in 4.57.x), else the model itself; see :class:`EmbeddingHead`
_EMBEDDING_MODELS: dict[str, tuple[str, Callable[[object], Pooling], CaptureKind, str, str]] = {
    "Dinov2Model": ("DINOv2", _class_token, "projections", "pooler_output", "hidden_size"),  # layernorm(CLS)
    "Dinov2WithRegistersModel": ("DINOv2", _class_token, "projections", "pooler_output", "hidden_size"),
    "DINOv3ViTModel": ("DINOv3", _class_token, "kernel", "pooler_output", "hidden_size"),
    "ViTModel": ("ViT", _class_token, "projections", "pooler_output", "hidden_size"),  # tanh(dense(CLS))
    "DeiTModel": ("DeiT", _class_token, "projections", "pooler_output", "hidden_size"),
    "BeitModel": ("BEiT", _beit_pooling, "kernel", "pooler_output", "hidden_size"),
    "Data2VecVisionModel": ("Data2Vec-Vision", _beit_pooling, "kernel", "pooler_output", "hidden_size"),
    "CLIPVisionModel": ("CLIP", _class_token, "projections", "pooler_output", "hidden_size"),  # post_layernorm(CLS)
    "CLIPVisionModelWithProjection": ("CLIP", _class_token, "projections", "image_embeds", "projection_dim"),
    "MetaClip2VisionModel": ("MetaCLIP 2", _class_token, "projections", "pooler_output", "hidden_size"),
    "MetaClip2VisionModelWithProjection": ("MetaCLIP 2", _class_token, "projections", "image_embeds", "projection_dim"),
    "SiglipVisionModel": ("SigLIP", lambda config: ("probe",), "projections", "pooler_output", "hidden_size"),
}

_GROUP_NAMES = {
    "class": "the class token",
    "distillation": "the distillation token",
    "patches": "the mean of the patch tokens",
    "tokens": "the mean of all tokens",
    "probe": "an attention-pooling head's probe",
}


def _pooling_name(pooling: Pooling) -> str:
    """``("class", "patches")`` -> ``"the class token and the mean of the patch tokens"``."""
    return " and ".join(_GROUP_NAMES[group] for group in pooling)


def _hf(
    model: nn.Module,
    vision: ForeignModule,
    family: str,
    pooling: Pooling,
    capture: CaptureKind,
    num_labels: int,
    logits: Callable[[Tensor], Tensor],
    probe: nn.Module | None = None,
) -> Architecture:
    config = vision.config
    embeddings = vision.embeddings
    has_class = getattr(embeddings, "cls_token", None) is not None or getattr(embeddings, "class_embedding", None) is not None
    distillation = getattr(embeddings, "distillation_token", None) is not None
    registers = getattr(embeddings, "register_tokens", None)
    prefix = int(has_class) + int(distillation) + (registers.shape[1] if registers is not None else 0)
    return Architecture(
        family=family,
        vision=vision,
        capture=capture,
        pooling=pooling,
        pooling_name=_pooling_name(pooling),
        num_prefix_tokens=prefix,
        has_class_token=has_class,
        patch_size=_pair(config.patch_size),
        image_size=_pair(config.image_size),
        num_channels=int(config.num_channels),
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
        num_labels=int(num_labels),
        logits=logits,
        probe=probe,
    )


def _hf_logits(model: nn.Module, vision: ForeignModule, read: Callable[..., Tensor] | None = None) -> Callable[[Tensor], Tensor]:
    """Logits of a transformers classifier (or ``read(pixel_values, **kwargs)`` of
    ``model``), passing ``interpolate_pos_encoding=True`` when the input size differs from
    the training size and the model can be told (by name, or through ``**kwargs`` to a
    vision transformer that takes it)."""
    params = inspect.signature(model.forward).parameters
    takes = "interpolate_pos_encoding" in params or (
        any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        and "interpolate_pos_encoding" in inspect.signature(vision.forward).parameters
    )
    native = _pair(vision.config.image_size)
    read = read or _output_logits(model)

    def logits(pixel_values: Tensor) -> Tensor:
        if takes and tuple(pixel_values.shape[-2:]) != native:
            return read(pixel_values, interpolate_pos_encoding=True)
        return read(pixel_values)

    return logits


def _output_logits(model: nn.Module) -> Callable[..., Tensor]:
    def read(pixel_values: Tensor, **kwargs: Any) -> Tensor:
        output = model(pixel_values=pixel_values, **kwargs)
        return output.logits if hasattr(output, "logits") else output[0]

    return read


def _transformers_names(model: nn.Module) -> set[str]:
    """Names of the transformers classes ``model`` is an instance of."""
    return {cls.__name__ for cls in type(model).__mro__ if cls.__module__.startswith("transformers.")}


def _is_timm(model: nn.Module) -> bool:
    return any(cls.__module__.startswith("timm.") and cls.__name__ in TIMM_MODEL_CLASSES for cls in type(model).__mro__)


def _timm(vision: ForeignModule, num_labels: int, family: str, logits: Callable[[Tensor], Tensor]) -> Architecture:
    """A timm ``VisionTransformer``, ``VisionTransformerDistilled`` or ``Eva``, native or
    inside ``TimmWrapperForImageClassification`` or an :class:`EmbeddingHead`."""
    pooling, pooling_name = _timm_pooling(vision)
    patch_embed = vision.patch_embed
    image_size = getattr(patch_embed, "img_size", None)
    return Architecture(
        family=family,
        vision=vision,
        capture="kernel",
        pooling=pooling,
        pooling_name=pooling_name,
        num_prefix_tokens=int(vision.num_prefix_tokens),
        has_class_token=getattr(vision, "cls_token", None) is not None,
        patch_size=_pair(patch_embed.patch_size),
        image_size=None if image_size is None else _pair(image_size),
        num_channels=int(patch_embed.proj.in_channels),
        hidden_size=int(vision.embed_dim),
        num_layers=len(vision.blocks),
        num_labels=int(num_labels),
        logits=logits,
    )


def _timm_pooling(model: ForeignModule) -> tuple[Pooling | None, str]:
    """What a timm ViT's head reads (``forward_head``): see ``timm.models.vision_transformer.global_pool_nlc``."""
    if getattr(model, "head_dist", None) is not None:
        return ("class", "distillation"), _pooling_name(("class", "distillation"))
    if getattr(model, "attn_pool", None) is not None:
        return None, "an attention-pooling head (global_pool='map')"
    pool = model.global_pool
    if pool == "token":
        return ("class",), _pooling_name(("class",))
    if pool == "avg":
        pooling: Pooling = ("tokens",) if getattr(model, "pool_include_prefix", False) else ("patches",)
        return pooling, _pooling_name(pooling)
    return None, f"global_pool={pool!r}"


def _find_backbone(model: nn.Module) -> nn.Module | None:
    """The one supported backbone inside a user's classifier, or ``None``."""
    found = [
        module
        for module in model.modules()
        if module is not model
        and any(cls.__module__.startswith("transformers.") and cls.__name__ in _BACKBONES for cls in type(module).__mro__)
    ]
    outer = [m for m in found if not any(m is not other and m in set(other.modules()) for other in found)]
    if len(outer) > 1:
        raise UnsupportedModelError(
            f"{type(model).__name__} holds {len(outer)} supported backbones; a classifier on one backbone is supported"
        )
    return outer[0] if outer else None


def _custom_head(model: nn.Module, backbone: nn.Module) -> Architecture:
    """A user's classifier on a supported backbone (the protocol in docs/models.md)."""
    name = type(model).__name__
    num_labels = getattr(model, "num_labels", None)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise UnsupportedModelError(
            f"{name} holds a {type(backbone).__name__} but no int attribute num_labels (the number of logits its "
            "forward returns); see 'Your own head' in docs/models.md"
        )
    pooling = parse_pooling(getattr(model, "token_pooling", "class"))
    family, capture = next(_BACKBONES[cls.__name__] for cls in type(backbone).__mro__ if cls.__name__ in _BACKBONES)

    return _hf(model, backbone, family, pooling, capture, num_labels, _head_logits(model, num_labels))


def _head_logits(model: nn.Module, num_labels: int) -> Callable[[Tensor], Tensor]:
    """The logits of a user's module, checked to be ``(B, num_labels)``."""
    name = type(model).__name__

    def logits(pixel_values: Tensor) -> Tensor:
        output = model(pixel_values)
        output = output.logits if hasattr(output, "logits") else output
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != (pixel_values.shape[0], num_labels):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise TypeError(
                f"{name}.forward(pixel_values) must return logits (B, num_labels) = ({pixel_values.shape[0]}, {num_labels}) "
                f"or an output with .logits; got {shape}"
            )
        return output

    return logits


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


class EmbeddingHead(nn.Module):
    """Base class of a head on the embedding a supported backbone itself returns.

    The embedding is the one the model returns: ``pooler_output`` of ``Dinov2Model``,
    ``ViTModel`` (its pooler), ``BeitModel``, ``SiglipVisionModel``, ...,
    ``image_embeds`` of ``CLIPVisionModelWithProjection``, ``get_image_features`` of a
    zero-shot image-text model (its image tower), the output of a timm ViT created with
    ``num_classes=0`` (see :data:`~captum_gmar.names.EMBEDDING_MODEL_CLASSES`). The
    attribution methods read out the rollout where that embedding pools the tokens.
    A subclass sets ``num_labels`` and implements ``forward(pixel_values) -> (B,
    num_labels)`` from :meth:`embed` (e.g.
    :class:`~captum_gmar.similarity.SimilarityModel`).

    Args:
        backbone: a supported embedding model (also inside peft or ``torch.compile``).

    Raises:
        UnsupportedModelError: ``backbone`` is not one of them.
    """

    num_labels: int

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = unwrap_model(backbone)
        self.embedding_width = embedding_width(self.backbone)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """``(B, D)`` embeddings of ``pixel_values`` ``(B, C, H, W)``, with autograd."""
        return read_embedding(self.backbone, pixel_values)


def embedding_width(model: nn.Module) -> int:
    """``D``, the width of the embedding ``model`` returns (see :class:`EmbeddingHead`).

    Raises:
        UnsupportedModelError: ``model`` is not a supported embedding model.
    """
    kind, spec = _embedding_kind(model)
    hf: ForeignModule = model
    if kind == "zero-shot":
        config = hf.config
        return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)  # SigLIP: no projection
    if kind == "timm":
        return int(getattr(model, "head_hidden_size", None) or hf.num_features)
    return int(getattr(hf.config, spec[4]))  # CLIPVisionModel's config is the vision config


def read_embedding(model: nn.Module, pixel_values: Tensor) -> Tensor:
    """``(B, D)``: the embedding ``model`` returns for ``pixel_values`` (see :class:`EmbeddingHead`)."""
    kind, spec = _embedding_kind(model)
    if kind == "zero-shot":
        return image_features(model, pixel_values)
    if kind == "timm":
        return model(pixel_values)
    field = spec[3]

    def read(x: Tensor, **kwargs: Any) -> Tensor:
        output = model(pixel_values=x, **kwargs)
        embedding = getattr(output, field)
        return output.last_hidden_state[:, 0] if embedding is None else embedding  # ViT, DeiT, BEiT without pooler: CLS

    return _hf_logits(model, _tower(model), read)(pixel_values)


def _embedding_kind(model: nn.Module) -> tuple[str, tuple]:
    """``("zero-shot", ())``, ``("timm", ())`` or ``("hf", _EMBEDDING_MODELS entry)``."""
    names = _transformers_names(model)
    if names & set(ZERO_SHOT_MODEL_CLASSES):
        return "zero-shot", ()
    if _is_timm(model):
        timm_model: ForeignModule = model
        if timm_model.num_classes != 0:
            raise UnsupportedModelError(
                f"this timm {type(model).__name__} has a classifier; for its embedding create it with num_classes=0"
            )
        return "timm", ()
    found = [name for name in EMBEDDING_MODEL_CLASSES if name in names]
    if not found:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a supported embedding model; supported: {', '.join(EMBEDDING_MODEL_CLASSES)}, "
            f"the image towers of {', '.join(ZERO_SHOT_MODEL_CLASSES)}, and timm ViTs created with num_classes=0"
        )
    return "hf", _EMBEDDING_MODELS[found[0]]


def _tower(model: nn.Module) -> nn.Module:
    """The vision transformer of an embedding model: its ``vision_model`` or itself."""
    return getattr(model, "vision_model", model)


def _embedding_head(head: EmbeddingHead) -> Architecture:
    """The architecture of an :class:`EmbeddingHead`: its backbone's, read out where the
    embedding pools the tokens, with the head's outputs as logits."""
    name = type(head).__name__
    num_labels = getattr(head, "num_labels", None)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise UnsupportedModelError(f"{name} must set an int num_labels >= 1 (the number of outputs of its forward)")
    backbone = head.backbone
    logits = _head_logits(head, num_labels)
    kind, spec = _embedding_kind(backbone)
    if kind == "timm":
        return _timm(backbone, num_labels, "timm", logits)
    if kind == "zero-shot":
        family, pooling = _ZERO_SHOT[next(iter(_transformers_names(backbone) & set(ZERO_SHOT_MODEL_CLASSES)))]
        vision = backbone.vision_model
    else:
        family, pooling_of, capture, _, _ = spec
        vision = _tower(backbone)
        pooling = pooling_of(vision.config) if getattr(backbone, "pooler", True) is not None else ("class",)
    probe = None
    if pooling == ("probe",):
        probe = getattr(getattr(vision, "head", None), "attention", None)
        if probe is None:
            raise UnsupportedModelError(
                f"this {family} model has no attention-pooling head (vision_use_head=False), so it returns no embedding"
            )
    return _hf(head, vision, family, pooling, "projections" if kind == "zero-shot" else capture, num_labels, logits, probe=probe)


def layer_of(model: nn.Module, attention: nn.Module) -> nn.Module:
    """The transformer layer holding ``attention``: the outermost module below the
    ``ModuleList`` (timm: ``Sequential``) of layers that contains it."""
    for layers in model.modules():
        if isinstance(layers, (nn.ModuleList, nn.Sequential)):  # transformers' layer lists, timm's blocks
            for layer in layers:
                if any(m is attention for m in layer.modules()):
                    return layer
    raise ValueError(f"cannot find the layer holding {type(attention).__name__}")
