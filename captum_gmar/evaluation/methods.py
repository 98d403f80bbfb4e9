"""Every compared method behind one call: ``method(images, targets) -> (B, H, W)`` maps.

Attention methods (GMAR, rollout, raw attention, GAE, Grad-CAM) give one map per image,
repeated over channels; it is taken from channel 0. Captum's IntegratedGradients and
Saliency give one value per channel; they are reduced to a map by the sum of absolute
values over channels (the usual choice for image saliency figures and for
deletion/insertion). AttnLRP and CP-LRP give signed relevance per channel, whose sign
means something (evidence for or against the class): it is summed over channels, and
by default its positive part is the map (relevance for the class; the evidence against
it ranks last, as zero). ``relevance_map`` chooses otherwise (see
:data:`~captum_gmar.names.RELEVANCE_MAPS`): ``"signed"`` keeps the sum, so that the
evidence against the class ranks last in its own order; ``"abs"`` takes its absolute
value, ranking evidence against the class as high as evidence for it. The localisation
metrics count negative values as no mass, so ``"signed"`` changes only the order-based
metrics (deletion, insertion, the perturbation AUCs, rank correlations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from captum.attr import Attribution, IntegratedGradients, Saliency
from torch import Tensor, nn

from ..methods.attention_rollout import AttentionRollout
from ..methods.gae import GenericAttentionExplainability
from ..methods.gmar import GMARAttribution
from ..methods.gradcam import TokenGradCAM
from ..methods.lrp import CPLRP, AttnLRP
from ..methods.raw_attention import RawAttention
from ..names import METHOD_KEYS, RELEVANCE_MAPS
from ..vit.model import VisionTransformer, as_vision_transformer

__all__ = ["METHOD_KEYS", "Method", "build_methods", "method_keys", "register_method"]

#: methods added with register_method: key -> build(model) -> Method
_REGISTERED: dict[str, Callable[[nn.Module], Method]] = {}


@dataclass(frozen=True)
class Method:
    """A named attribution method with the comparison's calling convention."""

    name: str
    attribution: Attribution
    #: keyword arguments given to ``attribution.attribute`` besides inputs and target
    options: dict
    #: how ``attribute``'s channels become one map: ``"first"`` (a map repeated over
    #: channels), ``"abs"`` (sum of absolute values: Captum's gradient methods), or for
    #: signed relevance the sum's ``"positive"`` part, the ``"signed"`` sum or its
    #: ``"abs_sum"`` (absolute value)
    reduce: str = "first"

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        """Captum-shaped attributions ``(B, C, H, W)`` (for Captum's metrics)."""
        if self.reduce == "abs":  # Captum's gradient methods want inputs that require grad
            images = images.detach().requires_grad_(True)
        return self.attribution.attribute(images, target=target, **self.options)

    def maps_and_head_weights(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """Pixel maps ``(B, H, W)`` and, for GMAR, its head weights ``(B, L, H)`` from the
        same call (``None`` for the other methods)."""
        weights = None
        if isinstance(self.attribution, GMARAttribution):
            attributions, weights = self.attribution.attribute(images, target=targets, return_head_weights=True, **self.options)
            assert isinstance(attributions, Tensor)  # a tensor in, a tensor out
        else:
            attributions = self.explain(images, targets)
        return self.to_maps(attributions), weights

    def to_maps(self, attributions: Tensor) -> Tensor:
        """The maps of ``attribute``'s output, by :attr:`reduce`: float32 ``(B, H, W)`` from
        ``(B, C, H, W)`` attributions; from patch maps ``(B, h, w)`` (``output="patches"``,
        where relevance is already summed over each patch's channels and pixels), the same
        sign choice on the patch sums."""
        attributions = attributions.detach()
        if attributions.dim() == 4:  # channels to one map first
            if self.reduce == "first":
                return attributions[:, 0].float()
            attributions = attributions.abs().sum(1) if self.reduce == "abs" else attributions.sum(1)
        if self.reduce == "positive":
            return attributions.clamp(min=0).float()
        if self.reduce in ("abs_sum", "abs"):
            return attributions.abs().float()
        return attributions.float()

    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """Pixel maps ``(B, H, W)`` for ``images`` ``(B, C, H, W)`` and ``targets`` ``(B,)``."""
        return self.maps_and_head_weights(images, targets)[0]


def _builders(ig_steps: int, ig_internal_batch_size: int | None, relevance_map: str) -> dict[str, Callable[[VisionTransformer], Method]]:
    def captum_method(name: str, cls: type, options: dict) -> Callable[[VisionTransformer], Method]:
        return lambda vit: Method(name, cls(vit.logits), options, reduce="abs")

    relevance = {"positive": "positive", "signed": "signed", "abs": "abs_sum"}[relevance_map]

    return {
        "gmar-l1": lambda vit: Method("GMAR (L1)", GMARAttribution(vit, norm="l1"), {}),
        "gmar-l2": lambda vit: Method("GMAR (L2)", GMARAttribution(vit, norm="l2"), {}),
        # head scores invariant to rescaling a head's values against its output projection (evaluation.invariance)
        "gmar-attention": lambda vit: Method("GMAR (attention grad, L1)", GMARAttribution(vit, head_gradient="attention"), {}),
        "gmar-gate": lambda vit: Method("GMAR (gate, abs)", GMARAttribution(vit, head_gradient="gate"), {}),
        "gmar-gate-positive": lambda vit: Method("GMAR (gate, positive)", GMARAttribution(vit, head_gradient="gate", gate="positive"), {}),
        "rollout": lambda vit: Method("Attention rollout", AttentionRollout(vit), {}),
        "raw-attention": lambda vit: Method("Raw attention", RawAttention(vit), {}),
        "gae": lambda vit: Method("GAE", GenericAttentionExplainability(vit), {}),
        "gradcam": lambda vit: Method("Grad-CAM", TokenGradCAM(vit), {}),
        "attnlrp": lambda vit: Method("AttnLRP", AttnLRP(vit), {}, reduce=relevance),
        "cplrp": lambda vit: Method("CP-LRP", CPLRP(vit), {}, reduce=relevance),
        "ig": captum_method(
            f"IG ({ig_steps} steps)",
            IntegratedGradients,
            {"n_steps": ig_steps, "internal_batch_size": ig_internal_batch_size},
        ),
        "saliency": captum_method("Saliency", Saliency, {"abs": True}),
    }


def build_methods(
    model_or_vit: nn.Module | VisionTransformer,
    keys: list[str] | tuple[str, ...] = METHOD_KEYS,
    ig_steps: int = 50,
    ig_internal_batch_size: int | None = None,
    relevance_map: str = "positive",
) -> list[Method]:
    """Build the methods named by ``keys`` (see :data:`METHOD_KEYS`) for a model, or for
    one already wrapped in a :class:`~captum_gmar.vit.model.VisionTransformer`, which
    every built-in method then shares (a registered method's builder gets the model,
    ``vit.model`` for a wrapped one).

    IntegratedGradients uses a zero baseline (the mean image in normalised pixel space)
    and ``ig_steps`` steps, evaluated ``ig_internal_batch_size`` at a time.
    ``relevance_map`` (one of :data:`~captum_gmar.names.RELEVANCE_MAPS`) is how AttnLRP's
    and CP-LRP's signed relevance becomes their map (see the module's docstring).
    """
    if relevance_map not in RELEVANCE_MAPS:
        raise ValueError(f"relevance_map must be one of {', '.join(RELEVANCE_MAPS)}, got {relevance_map!r}")
    builtin = _builders(ig_steps, ig_internal_batch_size, relevance_map)
    unknown = [key for key in keys if key not in builtin and key not in _REGISTERED]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(method_keys())}")
    model = model_or_vit.model if isinstance(model_or_vit, VisionTransformer) else model_or_vit
    vit: VisionTransformer | None = None  # wrapped at the first built-in method, then shared
    methods = []
    for key in keys:
        if key in _REGISTERED:
            methods.append(_REGISTERED[key](model))
        else:
            vit = vit or as_vision_transformer(model_or_vit)
            methods.append(builtin[key](vit))
    return methods


def register_method(key: str, build: Callable[[nn.Module], Method]) -> None:
    """Add a method to those a comparison can run, under ``key`` (``compare(methods=[...,
    key])``): ``build(model)`` returns the :class:`Method` for a model, e.g.
    ``lambda model: Method("My method", MyAttribution(model), {})`` for a Captum
    ``Attribution`` whose ``attribute(images, target=...)`` returns ``(B, C, H, W)`` maps.

    Raises:
        ValueError: ``key`` is a built-in method's or already registered.
    """
    if key in METHOD_KEYS or key in _REGISTERED:
        raise ValueError(f"method {key!r} exists already; choose another key")
    _REGISTERED[key] = build


def method_keys() -> tuple[str, ...]:
    """The keys of every method a comparison can run: the built-in ones, then the registered."""
    return (*METHOD_KEYS, *_REGISTERED)
