"""Zero-shot classification with an image-text model: the text prompts are the classes.

CLIP, MetaCLIP 2 and SigLIP score an image against a text by the scaled cosine similarity
of their embeddings (plus a learnt bias for SigLIP), exactly as ``logits_per_image`` of
the model's own forward. With ``K`` prompts these ``K`` logits play the role of class
logits, and a map explains one prompt. The text tower runs once, when the attribution
object is built; every pass then runs the vision tower only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .model_state import evaluating, model_lock

#: tokenized prompts: the tokenizer's or processor's output (``input_ids`` and optionally
#: ``attention_mask``), or an ``input_ids`` tensor ``(K, L)``
Prompts = Mapping[str, Tensor] | Tensor

_TEXT_KEYS = ("input_ids", "attention_mask", "position_ids")


class ZeroShotHead:
    """The image-text logits of ``model`` against fixed, tokenized prompts.

    Args:
        model: a ``CLIPModel``, ``MetaClip2Model`` or ``SiglipModel``.
        text: the tokenizer's or processor's output for the ``K`` prompts (a mapping with
            ``input_ids`` and optionally ``attention_mask``; other keys such as
            ``pixel_values`` are ignored), or an ``input_ids`` tensor ``(K, L)``.

    Raises:
        ValueError: ``input_ids`` that are not integers in ``0 .. vocab_size - 1`` (naming
            the prompt), or an ``attention_mask`` of another shape or with values other
            than 0 and 1.

    The text embeddings are computed here, once, in eval mode and without gradients; a
    text tower changed later (e.g. LoRA on it) needs a new attribution object.
    """

    def __init__(self, model: nn.Module, text: Prompts) -> None:
        inputs = {"input_ids": text} if isinstance(text, Tensor) else {k: text[k] for k in _TEXT_KEYS if k in text}
        ids = inputs.get("input_ids")
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[0] == 0:
            raise ValueError(
                "text must hold input_ids (K prompts, L tokens), e.g. processor(text=prompts, padding=True, "
                f"return_tensors='pt'); got {type(text).__name__}"
            )
        clip: Any = model  # CLIP's, MetaCLIP 2's or SigLIP's parts, found by name
        _check_prompts(inputs, clip.config.text_config.vocab_size)
        self.model = clip
        device = next(model.parameters()).device
        with model_lock(model), evaluating(model), torch.no_grad():
            features = _pooled(clip.get_text_features(**{k: v.to(device) for k, v in inputs.items()}))
        #: ``(K, E)`` unit-norm text embeddings
        self.text_embeds = features / features.norm(dim=-1, keepdim=True)
        #: ``K``, the number of prompts (classes)
        self.num_labels = int(ids.shape[0])

    def logits(self, pixel_values: Tensor) -> Tensor:
        """``(B, K)`` image-text logits, ``model(...).logits_per_image`` for these prompts.

        Passes ``interpolate_pos_encoding=True`` for inputs of another size than the
        vision tower's ``image_size``.
        """
        model = self.model
        image = image_features(model, pixel_values)
        image = image / image.norm(dim=-1, keepdim=True)
        text = self.text_embeds.to(image.device, image.dtype)
        logits = image @ text.t() * model.logit_scale.exp().to(image.device)
        bias = getattr(model, "logit_bias", None)  # SigLIP's sigmoid loss learns one
        return logits + bias.to(image.device) if bias is not None else logits


def image_features(model: nn.Module, pixel_values: Tensor) -> Tensor:
    """``(B, E)`` image embeddings of an image-text model, ``get_image_features`` (not
    normalised), with ``interpolate_pos_encoding=True`` for inputs of another size than
    the vision tower's ``image_size``."""
    clip: Any = model  # its parts, found by name
    size = clip.config.vision_config.image_size
    other_size = tuple(pixel_values.shape[-2:]) != ((size, size) if isinstance(size, int) else tuple(size))
    return _pooled(clip.get_image_features(pixel_values=pixel_values, interpolate_pos_encoding=other_size))


def _check_prompts(inputs: Mapping[str, Tensor], vocab_size: int) -> None:
    """Refuse prompts the text tower would fail on deep inside (torch's ``index out of
    range in self``) or read silently wrong: ``input_ids`` ``(K, L)`` must be integer ids
    in ``0 .. vocab_size - 1``, and ``attention_mask`` (if given) shaped like them and
    holding only 0 and 1."""
    ids = inputs["input_ids"]
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(
            f"text: every prompt's input_ids are {ids.dtype}; token ids must be integers (the tokenizer's output with return_tensors='pt')"
        )
    for rule, bad in (("negative", ids < 0), (f"not below the vocabulary size {vocab_size}", ids >= vocab_size)):
        if bad.any():
            prompt, position = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"text: prompt {prompt} has token id {int(ids[prompt, position])} at position {position}, which is {rule}; "
                f"token ids must be 0..{vocab_size - 1} (tokenize with this model's tokenizer)"
            )
    mask = inputs.get("attention_mask")
    if mask is None:
        return
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(
            f"text: attention_mask is {tuple(mask.shape)} but input_ids are {tuple(ids.shape)} (prompts, tokens); "
            "they must have one shape: take both from one tokenizer call"
        )
    bad = (mask != 0) & (mask != 1)  # transformers' versions read other values differently (4.x takes a 2 for padding)
    if bad.any():
        prompt, position = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"text: prompt {prompt} has attention_mask value {mask[prompt, position].item()} at position {position}; "
            "the mask must be 1 for a token and 0 for padding (the tokenizer's output)"
        )


def _pooled(features: Any) -> Tensor:
    """The embeddings of ``get_*_features``: a tensor in transformers 4.x, the
    ``pooler_output`` of an output object in 5.x."""
    return features if isinstance(features, Tensor) else features.pooler_output
