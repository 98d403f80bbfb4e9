"""Names shared by the package and its command line, importable without torch.

The command line's parser needs the method keys, metric groups and supported classes to
answer ``--help`` and reject bad arguments at once; importing torch and transformers
would take seconds. Nothing here imports more than the standard library.
"""

from __future__ import annotations

#: Image classifiers this package explains, by transformers class name (all load with
#: ``AutoModelForImageClassification``); see ``docs/models.md`` for what each reads.
SUPPORTED_MODEL_CLASSES: tuple[str, ...] = (
    "ViTForImageClassification",
    "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "Dinov2ForImageClassification",
    "Dinov2WithRegistersForImageClassification",
    "ViTMSNForImageClassification",
    "IJepaForImageClassification",
    "BeitForImageClassification",
    "Data2VecVisionForImageClassification",
    "CLIPForImageClassification",
    "MetaClip2ForImageClassification",
    "SiglipForImageClassification",
    "TimmWrapperForImageClassification",
)

#: Image-text models explained zero-shot, with text prompts as the classes.
ZERO_SHOT_MODEL_CLASSES: tuple[str, ...] = ("CLIPModel", "MetaClip2Model", "SiglipModel")

#: Backbones accepted inside a user's own classifier (see ``docs/models.md``, "Your own head").
BACKBONE_MODEL_CLASSES: tuple[str, ...] = ("DINOv3ViTModel", "ViTModel", "Dinov2Model", "Dinov2WithRegistersModel")

#: Backbones whose own embedding is explained with ``references=`` (similarity to
#: reference embeddings as classes; see :mod:`captum_gmar.similarity`), besides the
#: zero-shot models' image towers and timm ViTs created with ``num_classes=0``.
EMBEDDING_MODEL_CLASSES: tuple[str, ...] = (
    "Dinov2Model",
    "Dinov2WithRegistersModel",
    "DINOv3ViTModel",
    "ViTModel",
    "DeiTModel",
    "BeitModel",
    "Data2VecVisionModel",
    "CLIPVisionModel",
    "CLIPVisionModelWithProjection",
    "MetaClip2VisionModel",
    "MetaClip2VisionModelWithProjection",
    "SiglipVisionModel",
)

#: Native timm models (``pip install "captum-gmar[timm]"``), by class name in ``timm.models``.
TIMM_MODEL_CLASSES: tuple[str, ...] = ("VisionTransformer", "VisionTransformerDistilled", "Eva")

#: The families of :data:`SUPPORTED_MODEL_CLASSES`, for messages ("... image classifiers").
SUPPORTED_FAMILIES = (
    "ViT, DeiT (with or without teacher), DINOv2 (with or without registers), ViT-MSN, I-JEPA, BEiT, "
    "Data2Vec-Vision, CLIP, MetaCLIP 2, SigLIP and timm (through TimmWrapper)"
)

#: Methods of the comparison, in display order (see :mod:`captum_gmar.evaluation.methods`).
METHOD_KEYS: tuple[str, ...] = (
    "gmar-l1",
    "gmar-l2",
    "gmar-attention",
    "gmar-gate",
    "gmar-gate-positive",
    "rollout",
    "raw-attention",
    "gae",
    "gradcam",
    "attnlrp",
    "cplrp",
    "ig",
    "saliency",
)

#: Metric groups of the comparison (see :func:`captum_gmar.evaluation.runner.compare`).
METRIC_KEYS: tuple[str, ...] = ("faithfulness", "localisation", "robustness", "heads", "sanity")

#: Ablations of GMAR's head weights a comparison can add (see
#: :mod:`captum_gmar.evaluation.ablation`).
ABLATION_KINDS: tuple[str, ...] = ("layers", "heads")

#: The groups a comparison computes unless told: all but ``sanity``, which explains every
#: item three times more (on two re-initialised copies of the model).
DEFAULT_METRIC_KEYS: tuple[str, ...] = ("faithfulness", "localisation", "robustness", "heads")

#: Reference models shipped with the package: name -> folder (relative to the package)
#: holding their ``config.json`` and image processor (see
#: :func:`captum_gmar.reference.load_reference_model`; the backbone of ``dinov2-small``
#: is converted into the user cache at its first load).
REFERENCE_MODELS: dict[str, str] = {
    "vit-tiny": "reference/model",
    "dinov2-small": "reference/dinov2_small",
    "dinov2-small-backbone": "reference/dinov2_small_backbone",
}

#: How the signed relevance of AttnLRP and CP-LRP becomes one map per image (the channels
#: summed first): its positive part (the default: evidence for the target, the evidence
#: against it tied at zero), the signed sum (evidence against ranks last, in its order), or
#: its absolute value (evidence for and against alike). See
#: :mod:`captum_gmar.evaluation.methods`.
RELEVANCE_MAPS: tuple[str, ...] = ("positive", "signed", "abs")

#: the most items a comparison's report.html shows the maps of (the page stays a few MB)
GALLERY_MAX = 200
