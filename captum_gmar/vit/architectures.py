"""What the package knows about each supported model family.

For every supported class: where its vision transformer sits (the module holding the
patch embedding and the attention blocks), its special tokens, what its classifier reads
from the last layer's tokens (its pooling, from which the read-out row ``p`` is built),
how its attention is captured, and how to get its logits. Nothing here changes the
model; only a zero-shot model's text tower runs, once (see :mod:`captum_gmar.vit.zero_shot`).

Two ways of capturing the attention (see :mod:`captum_gmar.vit.capture`):

- ``"projections"``: the attention is ``softmax(q k^T s)`` of the query and key
  projections' outputs, so hooks on the projections suffice (ViT, DeiT, DINOv2, ViT-MSN,
  I-JEPA, CLIP, MetaCLIP 2, SigLIP).
- ``"kernel"``: the scores get a relative position bias (BEiT, Data2Vec-Vision) or the
  queries and keys are rotated after the projections (DINOv3 and EVA's RoPE), so what the
  attention kernel itself received is captured (timm models too, whose fused ``qkv``
  projection and query/key norms make this the simpler way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..names import (
    BACKBONE_MODEL_CLASSES,
    BACKBONES,
    CLASSIFIERS,
    EMBEDDING_MODEL_CLASSES,
    SUPPORTED_FAMILIES,
    SUPPORTED_MODEL_CLASSES,
    TIMM_MODEL_CLASSES,
    ZERO_SHOT_MODEL_CLASSES,
    ZERO_SHOT_MODELS,
)
from .blocks import (
    AttentionBlock,
    CaptureKind,
    ForeignModule,
    Pooling,
    Readout,
    find_attention_blocks,
    parse_pooling,
)
from .calls import head_logits, hf_logits, is_timm, output_logits, pair, transformers_names
from .embedding import EmbeddingHead, embedding_kind, vision_tower
from .zero_shot import Prompts, ZeroShotHead


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
    #: the distinct ``(1, H, T, T)`` relative position biases the attention's scores get:
    #: one per layer (BEiT, Data2Vec-Vision), one shared by every layer, or none; an sdpa
    #: kernel saves them for the backward pass and a capture at the kernel keeps them
    position_biases: int = 0
    #: values per token and hidden channel that the MLP's activation keeps for the backward
    #: pass beyond what a GELU keeps: CLIP's ``quick_gelu`` (``x * sigmoid(1.702 x)``) keeps
    #: the sigmoid's output, as wide as the MLP
    activation_extra: float = 0.0

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


def describe(model: nn.Module, text: Prompts | None = None) -> Architecture:
    """The :class:`Architecture` of a supported model.

    Args:
        model: an unwrapped model (see :func:`captum_gmar.vit.model_state.unwrap_model`).
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
    names = transformers_names(model)
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
        family, reads = ZERO_SHOT_MODELS[zero_shot.pop()]
        pooling = pooling_of(reads, None)
        probe = hf.vision_model.head.attention if pooling == ("probe",) else None
        return _hf(model, hf.vision_model, family, pooling, "projections", head.num_labels, head.logits, probe=probe)
    if "TimmWrapperForImageClassification" in names:
        return _timm(hf.timm_model, hf.config.num_labels, "timm (TimmWrapper)", output_logits(model))
    for name, (family, tower, reads, capture) in CLASSIFIERS.items():
        if name in names:
            vision = hf.vision_model if tower == "vision_model" else hf.base_model
            kind = cast(CaptureKind, capture)  # the table holds capture kinds
            return _hf(model, vision, family, pooling_of(reads, vision.config), kind, hf.config.num_labels, hf_logits(model, vision))
    if is_timm(model):
        if hf.num_classes == 0:
            raise UnsupportedModelError(
                f"this timm {type(model).__name__} has no classifier (num_classes=0) and returns an embedding: pass "
                "references= (K reference embeddings, e.g. from captum_gmar.vit.similarity.embed_images) to explain its "
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
            "captum_gmar.vit.similarity.embed_images) to explain its similarity to each, or put your head on it "
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


def pooling_of(spec: str, config: Any) -> Pooling:
    """What a model reads, from its entry in the families' tables of :mod:`captum_gmar.names`
    (token groups joined by ``+``, or ``"beit"``) and its config."""
    if spec == "beit":  # BeitPooler / Data2VecVisionPooler: mean of tokens[1:] (layer-normed) or the class token
        return ("patches",) if config.use_mean_pooling else ("class",)
    return cast(Pooling, tuple(spec.split("+")))  # the tables hold token groups only


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
        patch_size=pair(config.patch_size),
        image_size=pair(config.image_size),
        num_channels=int(config.num_channels),
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
        num_labels=int(num_labels),
        logits=logits,
        probe=probe,
        position_biases=_position_biases(config),
        activation_extra=config.intermediate_size / config.hidden_size if getattr(config, "hidden_act", None) == "quick_gelu" else 0.0,
    )


def _position_biases(config: Any) -> int:
    """The distinct relative position biases of a Hugging Face vision config (see
    :attr:`Architecture.position_biases`)."""
    if getattr(config, "use_relative_position_bias", False):
        return int(config.num_hidden_layers)
    return int(bool(getattr(config, "use_shared_relative_position_bias", False)))


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
        patch_size=pair(patch_embed.patch_size),
        image_size=None if image_size is None else pair(image_size),
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
        and any(cls.__module__.startswith("transformers.") and cls.__name__ in BACKBONES for cls in type(module).__mro__)
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
    family, capture = next(BACKBONES[cls.__name__] for cls in type(backbone).__mro__ if cls.__name__ in BACKBONES)

    return _hf(model, backbone, family, pooling, cast(CaptureKind, capture), num_labels, head_logits(model, num_labels))


def _embedding_head(head: EmbeddingHead) -> Architecture:
    """The architecture of an :class:`EmbeddingHead`: its backbone's, read out where the
    embedding pools the tokens, with the head's outputs as logits."""
    name = type(head).__name__
    num_labels = getattr(head, "num_labels", None)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise UnsupportedModelError(f"{name} must set an int num_labels >= 1 (the number of outputs of its forward)")
    backbone = head.backbone
    logits = head_logits(head, num_labels)
    kind, spec = embedding_kind(backbone)
    if kind == "timm":
        return _timm(backbone, num_labels, "timm", logits)
    if kind == "zero-shot":
        family, reads = ZERO_SHOT_MODELS[next(iter(transformers_names(backbone) & set(ZERO_SHOT_MODEL_CLASSES)))]
        pooling = pooling_of(reads, None)
        vision = backbone.vision_model
    else:
        family, reads, capture, _, _ = spec
        vision = vision_tower(backbone)
        pooling = pooling_of(reads, vision.config) if getattr(backbone, "pooler", True) is not None else ("class",)
    probe = None
    if pooling == ("probe",):
        probe = getattr(getattr(vision, "head", None), "attention", None)
        if probe is None:
            raise UnsupportedModelError(
                f"this {family} model has no attention-pooling head (vision_use_head=False), so it returns no embedding"
            )
    return _hf(
        head, vision, family, pooling, "projections" if kind == "zero-shot" else cast(CaptureKind, capture), num_labels, logits, probe=probe
    )
