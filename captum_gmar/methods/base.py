"""The base classes of the attribution methods.

:class:`ViTAttribution` holds what every method shares: the wrapped model, the checked
``attribute`` call and the memory and time check before it. A small template method:
:class:`AttentionAttribution` checks inputs and targets, splits
the batch, runs one captured forward pass per chunk on the model's device and turns token
relevance into maps. A subclass implements only :meth:`AttentionAttribution._explain`,
which turns one :class:`~captum_gmar.vit.capture.AttentionTrace` into token relevance (the
read-out row ``p`` of the rolled-out matrix, see :attr:`AttentionAttribution.pooling`).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from ..core.allocator import mmapped_terms
from ..core.formatting import Targets, TargetType, batch_slices, check_pixel_values, chunk_targets, format_targets
from ..core.heads import HeadFusion
from ..core.maps import input_map, patch_map
from ..core.memory import CallSizes, Terms, attention_call_phases, estimated_bytes
from ..errors import NonFiniteError
from ..vit.blocks import Pooling, Readout
from ..vit.capture import AttentionTrace
from ..vit.model import VisionTransformer, as_vision_transformer
from ..vit.zero_shot import Prompts
from .guard import check_call

OutputKind = Literal["input", "patches"]
InputType = Tensor | tuple[Tensor]


class Explanation(NamedTuple):
    """What :meth:`AttentionAttribution._explain` returns for a chunk of ``B`` examples."""

    #: the relevance of every token for the read-out, ``(B, T)`` (for relevance
    #: propagation: of every input value, ``(B, C, H, W)``)
    relevance: Tensor
    #: ``(B, L', H)`` head weights of the layers taking part, or ``None``.
    head_weights: Tensor | None = None
    #: ``(B, K)`` the logits of the pass, detached (set by :meth:`ViTAttribution._chunk`)
    logits: Tensor | None = None


class Attributed(NamedTuple):
    """What :meth:`ViTAttribution.attribute_with_logits` returns for ``B`` images."""

    #: as ``attribute`` returns them (``(B, C, H, W)``, or ``(B, h, w)`` for ``output="patches"``)
    attributions: Tensor
    #: ``(B, L', H)`` GMAR's head weights, or ``None`` for the other methods
    head_weights: Tensor | None
    #: ``(B, K)`` float32 logits of the explained pass (the model's outputs: class logits,
    #: image-text logits or similarities), whose ``argmax`` is the predicted class
    logits: Tensor


class ViTAttribution(Attribution, ABC):
    """What every method on a wrapped vision transformer shares: the wrapper (its logits
    are ``forward_func``), the checked ``attribute`` call, and the check that it fits in
    memory and time before any work. ``attribute`` splits the batch into chunks; a
    subclass implements how one chunk is explained (:meth:`_chunk`), how the relevance
    becomes the output (:meth:`_shaped`) and the terms of its memory estimate
    (:meth:`memory_phases`, which :meth:`estimate_bytes` sums).

    Args:
        vit: the wrapped model (see :func:`~captum_gmar.vit.model.as_vision_transformer`).

    Attributes:
        forward_func: ``pixel_values -> logits``, as Captum's metrics expect.
    """

    vit: VisionTransformer
    #: whether a call runs a backward pass (for the time it takes)
    needs_gradients: bool = True

    def __init__(self, vit: VisionTransformer) -> None:
        self.vit = vit
        super().__init__(vit.logits)

    @log_usage()
    def attribute(
        self,
        inputs: InputType,
        target: TargetType = None,
        internal_batch_size: int | None = None,
        output: OutputKind = "input",
        *,
        allow_slow: bool = False,
    ) -> InputType:
        """Explain ``target`` for each image.

        Args:
            inputs: pixel values ``(B, C, H, W)`` (or a 1-tuple of them), any size the
                model accepts; moved to the model's device and dtype for the passes.
            target: Captum-style: an int or one-element tensor (one class for all), a
                list or 1-D tensor (one class per example), ``None`` for each
                example's predicted class, or a function of the logits ``(B, K)``
                returning one score per example ``(B,)`` (e.g. ``lambda z: z[:, 3] -
                z[:, 5]``, a margin; see :data:`~captum_gmar.core.formatting.TargetFunction`).
                Class-agnostic methods check it but do not depend on it.
            internal_batch_size: split the batch into chunks of this many examples to
                bound memory; results equal the whole batch's up to float rounding.
            output: ``"input"`` for attributions shaped like ``inputs`` (an attention
                method's patch map upsampled bilinearly and repeated over channels), or
                ``"patches"`` for the patch grid ``(B, h, w)`` (for relevance
                propagation, the sum over the channels and pixels of each patch).
            allow_slow: run a call whose attention alone would take longer than
                :data:`~captum_gmar.core.memory.SLOW_CALL_SECONDS` instead of refusing it
                (see :meth:`check_memory`).

        Returns:
            float32 attributions on ``inputs``' device (a 1-tuple when ``inputs`` was
            one): non-negative maps for the attention methods, signed relevance for
            relevance propagation (see :class:`~captum_gmar.methods.lrp.RelevancePropagation`).
        """
        maps, _, _ = self._attribute(inputs, target, internal_batch_size, output, allow_slow)
        return maps

    def attribute_with_logits(
        self, inputs: Tensor, target: TargetType = None, internal_batch_size: int | None = None, output: OutputKind = "input"
    ) -> Attributed:
        """As :meth:`attribute` (a tensor in), with the logits of the same pass: the
        predicted class and its score at no extra cost (a data set's job records them
        beside each map)."""
        maps, weights, logits = self._attribute(inputs, target, internal_batch_size, output, False)
        assert isinstance(maps, Tensor)  # a tensor in, a tensor out
        if logits is None:  # a subclass whose _chunk keeps no logits: one more forward pass
            with torch.no_grad():
                logits = self.vit.logits(inputs.to(self.vit.parameter.device)).float().to(inputs.device)
        return Attributed(maps, weights, logits)

    def _attribute(
        self,
        inputs: InputType,
        target: TargetType,
        internal_batch_size: int | None,
        output: OutputKind,
        allow_slow: bool,
    ) -> tuple[InputType, Tensor | None, Tensor | None]:
        """Shared body of ``attribute``: the attributions, the head weights ``(B, L', H)``
        (or ``None``) and the logits ``(B, K)`` (``None`` where :meth:`_chunk` kept none)."""
        vit = self.vit
        pixel_values, is_tuple, targets = prepare_call(vit, inputs, target, output)
        self._check_model()
        parts = batch_slices(pixel_values.shape[0], internal_batch_size)
        self.check_memory(pixel_values.shape, internal_batch_size, allow_slow)
        param = vit.parameter
        explanations = [
            self._chunk(pixel_values[part].to(device=param.device, dtype=param.dtype), chunk_targets(targets, part, param.device))
            for part in parts
        ]
        maps, weights, logits = self._joined(explanations, tuple(pixel_values.shape), output, pixel_values.device)
        return ((maps,) if is_tuple else maps), weights, logits

    def _joined(
        self, explanations: Sequence[Explanation], input_shape: tuple[int, ...], output: OutputKind, device: torch.device
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The chunks' explanations as one batch: the attributions for ``output``, the head
        weights (or ``None``) and the logits (or ``None``), on ``device``."""
        relevance = torch.cat([e.relevance for e in explanations]).float()
        check_finite_relevance(relevance, self.get_name())
        maps = self._shaped(relevance, input_shape, output).to(device)
        head_weights = [e.head_weights for e in explanations if e.head_weights is not None]  # all or none
        weights = torch.cat(head_weights).to(device) if head_weights else None
        kept = [e.logits for e in explanations if e.logits is not None]  # all or none (a subclass may keep none)
        logits = torch.cat(kept).float().to(device) if kept else None
        return maps, weights, logits

    def _check_model(self) -> None:  # noqa: B027 (most methods need no check of the model as it is now)
        """Refuse a call on the model as it is now (e.g. layers removed since construction)."""

    @abstractmethod
    def _chunk(self, x: Tensor, targets: Targets) -> Explanation:
        """The relevance of a chunk of ``B`` examples.

        Args:
            x: ``(B, C, H, W)`` pixel values on the model's device and dtype.
            targets: ``(B,)`` class indices on the model's device, a target function,
                or ``None`` for each example's predicted class.
        """

    @abstractmethod
    def _shaped(self, relevance: Tensor, input_shape: tuple[int, ...], output: OutputKind) -> Tensor:
        """The attributions ``attribute`` returns for ``output`` from the float32 relevance
        of the whole batch, on inputs of ``input_shape`` ``(B, C, H, W)``."""

    def _sizes(self, input_shape: Sequence[int]) -> CallSizes:
        """The sizes of a call on inputs of ``input_shape`` ``(B, C, H, W)`` that the
        estimates of :mod:`captum_gmar.core.memory` take."""
        vit = self.vit
        batch, channels, height, width = input_shape
        tokens = vit.num_tokens(height, width)
        itemsize = vit.parameter.element_size()
        return CallSizes(
            batch,
            tokens,
            vit.num_heads,
            vit.num_layers,
            vit.hidden_size,
            itemsize,
            channels * height * width,
            biases=vit.kept_attention_biases,
            activation_extra=vit.architecture.activation_extra,
        )

    @abstractmethod
    def memory_phases(self, input_shape: Sequence[int]) -> tuple[Terms, ...]:
        """The terms of the phases of one pass on inputs of ``input_shape`` ``(B, C, H, W)``
        (see :func:`~captum_gmar.core.memory.attention_call_phases`)."""

    def estimate_bytes(self, input_shape: Sequence[int], device: torch.device | str | None = None) -> int:
        """Estimated peak memory, in bytes, of one pass on inputs of ``input_shape``
        ``(B, C, H, W)`` on ``device`` (the model's by default): the tensors alive at the
        peak, and on a CPU what the C library keeps resident besides (see
        :mod:`captum_gmar.core.memory`)."""
        device = torch.device(device if device is not None else self.vit.parameter.device)
        return estimated_bytes(self.memory_phases(input_shape), device.type == "cpu", mmapped_terms(self._sizes(input_shape)))

    def check_memory(self, input_shape: Sequence[int], internal_batch_size: int | None = None, allow_slow: bool = False) -> None:
        """Refuse, before any work, a call on inputs of ``input_shape`` ``(B, C, H, W)`` that
        cannot fit in the memory the model's device has available, or (unless
        ``allow_slow``) whose attention alone would take longer than
        :data:`~captum_gmar.core.memory.SLOW_CALL_SECONDS` (see :mod:`captum_gmar.core.memory`).
        ``attribute`` calls it first; call it yourself to fail before other work on such
        inputs (e.g. a forward pass to predict the class).

        Raises:
            InsufficientMemoryError: naming the estimate, what is available, and either
                an ``internal_batch_size`` that fits or, if one image does not fit,
                that the images must be smaller.
            TooSlowError: naming the least time the attention would take, and the
                advice to resize the images or pass ``allow_slow=True``.
        """
        check_call(
            self.vit,
            self.get_name(),
            input_shape,
            internal_batch_size,
            self.estimate_bytes,
            self.needs_gradients,
            allow_slow,
            lambda x: self._attribute(x, None, None, "patches", True),
        )


class AttentionAttribution(ViTAttribution):
    """Base class of attribution methods that roll out a ViT's attention.

    Args:
        model: a supported model (see ``docs/models.md``): a Hugging Face image
            classifier (:data:`~captum_gmar.names.SUPPORTED_MODEL_CLASSES`), a zero-shot
            image-text model with ``text``, a timm ViT, or a user's head on a supported
            backbone; or such a model already wrapped in a
            :class:`~captum_gmar.vit.model.VisionTransformer`, used as it is (then
            without ``text``, ``references`` and ``center``, which are the wrapper's).
        start_layer: first layer that takes part (0-based); earlier layers are skipped.
        readout: which row of the rolled-out matrix is the map: ``"auto"`` (default)
            reads the model's own pooling where its classifier reads one group of tokens
            (the class token, the mean of the patch tokens or of all tokens) and the class
            token where it combines several (DeiT with teacher, DINOv2); ``"cls"`` the
            class token's row, as in the published methods; ``"model"`` the model's own
            pooling ``p``, i.e. ``p^T R``; ``None`` for a method that reads no row.
        text: for zero-shot image-text models (CLIP, MetaCLIP 2, SigLIP), the tokenized
            prompts, e.g. ``processor(text=prompts, padding=True, return_tensors="pt")``;
            ``target`` is then a prompt's index.
        references: for an embedding model (a backbone such as ``Dinov2Model``, CLIP's
            or SigLIP's image tower, a timm ViT with ``num_classes=0``), ``(K, D)``
            reference embeddings (:func:`~captum_gmar.vit.similarity.embed_images`); class
            ``k`` is the cosine similarity of the image's embedding to reference ``k``.
        center: with ``references``, an optional ``(D,)`` centre (a gallery's mean
            embedding) subtracted from both embeddings before the cosine.

    Attributes:
        forward_func: ``pixel_values -> logits``, as Captum's metrics expect.
        pooling: the token groups the read-out averages (``("class",)`` for the class
            token; see :data:`~captum_gmar.vit.architectures.Pooling`), or ``None``.
    """

    pooling: Pooling | None
    start_layer: int
    #: whether :meth:`_explain` reads the layers' ``value`` projections.
    needs_value: bool = False
    #: whether :meth:`_explain` reads the layers' ``hidden`` tokens.
    needs_hidden: bool = False
    #: float32 ``(B, H, T, T)`` maps' worth :meth:`_explain` holds at once, beside what the
    #: capture kept (for the memory check; fitted on the measured peak by
    #: ``benchmarks/fit_memory.py``, see :func:`~captum_gmar.core.memory.attention_call_phases`)
    maps_alive: float = 3.0

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        start_layer: int = 0,
        readout: Readout | None = "auto",
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
    ) -> None:
        super().__init__(as_vision_transformer(model, text, references, center))
        self.pooling = None if readout is None else self.vit.readout_pooling(readout)
        num_layers = self.vit.num_layers
        if isinstance(start_layer, bool) or not isinstance(start_layer, numbers.Integral):
            raise TypeError(f"start_layer must be an int, got {type(start_layer).__name__}")
        if not 0 <= start_layer < num_layers:
            raise ValueError(f"start_layer must lie in [0, {num_layers - 1}] for this {num_layers}-layer model, got {start_layer}")
        self.start_layer = int(start_layer)

    @property
    def layers(self) -> range:
        """Indices of the layers taking part, first layer first."""
        return range(self.start_layer, self.vit.num_layers)

    @abstractmethod
    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        """Token relevance for one chunk (read out with :meth:`_readout`).

        Args:
            trace: the captured forward pass of ``B`` examples.
            targets: ``(B,)`` class indices on the model's device, or a target
                function (see :data:`~captum_gmar.core.formatting.TargetFunction`).
        """

    def _check_model(self) -> None:
        if self.start_layer >= self.vit.num_layers:
            raise ValueError(f"start_layer {self.start_layer} does not exist: the model now has {self.vit.num_layers} layers")

    def _chunk(self, x: Tensor, targets: Targets) -> Explanation:
        """One captured pass of the chunk, explained by :meth:`_explain`."""
        with self.vit.trace(x, with_grad=self.needs_gradients, keep_value=self.needs_value, keep_hidden=self.needs_hidden) as trace:
            explanation = self._explain(trace, trace.logits.argmax(-1) if targets is None else targets)
            return explanation._replace(logits=trace.logits.detach())

    def _shaped(self, relevance: Tensor, input_shape: tuple[int, ...], output: OutputKind) -> Tensor:
        """The patch map ``(B, h, w)`` of the token relevance, upsampled to ``input_shape`` for ``"input"``."""
        vit = self.vit
        maps = patch_map(relevance, vit.num_prefix_tokens, vit.grid(*input_shape[-2:]))
        return input_map(maps, vit.patch_size, input_shape) if output == "input" else maps

    def _readout(self, trace: AttentionTrace) -> Tensor:
        """The read-out row ``p`` of :attr:`pooling` in ``trace`` (see :meth:`AttentionTrace.readout`)."""
        if self.pooling is None:
            raise TypeError(f"{type(self).__name__} was made with readout=None and reads no row of the rolled-out matrix")
        return trace.readout(self.pooling)

    def memory_phases(self, input_shape: Sequence[int]) -> tuple[Terms, ...]:
        """As :meth:`ViTAttribution.memory_phases` (see :func:`~captum_gmar.core.memory.attention_call_phases`)."""
        vit = self.vit
        # what the capture keeps per layer: queries and keys (or, at an eager kernel, the
        # probabilities, counted by maps_kept), and what _explain reads besides
        captured = 2 * (not vit.keeps_attention_maps) + self.needs_value + self.needs_hidden + self.needs_gradients
        return attention_call_phases(
            self._sizes(input_shape),
            self.maps_alive,
            captured,
            backward=self.needs_gradients,
            eager=vit.keeps_attention_for_backward,
            maps_kept=vit.keeps_attention_maps,
        )


def prepare_call(vit: VisionTransformer, inputs: InputType, target: TargetType, output: OutputKind) -> tuple[Tensor, bool, Targets]:
    """Check what ``attribute`` was given, before any model computation.

    Returns:
        The pixel values ``(B, C, H, W)``, whether ``inputs`` was a 1-tuple, and the
        targets ``(B,)``, a target function, or ``None`` (each example's predicted class).
    """
    is_tuple = isinstance(inputs, tuple)
    if is_tuple:
        if len(inputs) != 1:
            raise ValueError(f"inputs must be one tensor (or a 1-tuple), got a tuple of {len(inputs)}")
        (pixel_values,) = inputs
    else:
        pixel_values = inputs
    if output not in ("input", "patches"):
        raise ValueError(f"output must be 'input' or 'patches', got {output!r}")
    if vit.parameter.is_meta:
        raise ValueError("the model's parameters are on the meta device (no values); load its weights first")
    check_pixel_values(pixel_values, vit.num_channels, vit.patch_size)
    return pixel_values, is_tuple, format_targets(target, pixel_values.shape[0], vit.num_labels)


def check_finite_relevance(relevance: Tensor, method: str) -> None:
    """Raise :class:`~captum_gmar.errors.NonFiniteError` if ``relevance`` has NaN or infinite entries."""
    if not torch.isfinite(relevance).all():
        raise NonFiniteError(
            f"{method} produced NaN or infinite relevance: the gradients or attention maps overflowed "
            "(inputs far outside the image processor's range, or float16). Check the inputs' scale or run the "
            "model in float32 or bfloat16."
        )


def check_alpha(alpha: float) -> float:
    """Validate the residual weight ``alpha`` in ``[0, 1]``."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return float(alpha)


def check_head_fusion(head_fusion: HeadFusion) -> HeadFusion:
    """Validate how the heads' maps are fused: ``"mean"``, ``"max"`` or ``"min"``."""
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
    return head_fusion
