"""Names shared by the package and its command line, importable without torch.

The command line's parser needs the method keys, metric groups and supported classes to
answer ``--help`` and reject bad arguments at once; importing torch and transformers
would take seconds. Nothing here imports more than the standard library.
"""

from __future__ import annotations

#: The supported families, the one table of them (read by :mod:`captum_gmar.vit.architectures`,
#: which knows how to explain each). What a model reads from the last layer's tokens is
#: written as token groups joined by ``+`` (see :data:`captum_gmar.vit.blocks.TokenGroup`),
#: or ``"beit"``: BEiT's pooler, the mean of the patch tokens where ``config.use_mean_pooling``,
#: else the class token. The capture is ``"projections"`` or ``"kernel"`` (see
#: :mod:`captum_gmar.vit.capture`).

#: Image classifiers, by transformers class name (all load with
#: ``AutoModelForImageClassification``): class -> (family, where its vision transformer is
#: (``"base"``: ``base_model``, or ``"vision_model"``), what its classifier reads, capture).
CLASSIFIERS: dict[str, tuple[str, str, str, str]] = {
    "ViTForImageClassification": ("ViT", "base", "class", "projections"),
    "DeiTForImageClassification": ("DeiT", "base", "class", "projections"),
    "DeiTForImageClassificationWithTeacher": ("DeiT", "base", "class+distillation", "projections"),
    "Dinov2ForImageClassification": ("DINOv2", "base", "class+patches", "projections"),
    "Dinov2WithRegistersForImageClassification": ("DINOv2", "base", "class+patches", "projections"),
    "ViTMSNForImageClassification": ("ViT-MSN", "base", "class", "projections"),
    "IJepaForImageClassification": ("I-JEPA", "base", "tokens", "projections"),
    "BeitForImageClassification": ("BEiT", "base", "beit", "kernel"),
    "Data2VecVisionForImageClassification": ("Data2Vec-Vision", "base", "beit", "kernel"),
    "CLIPForImageClassification": ("CLIP", "vision_model", "patches", "projections"),
    "MetaClip2ForImageClassification": ("MetaCLIP 2", "vision_model", "patches", "projections"),
    "SiglipForImageClassification": ("SigLIP", "vision_model", "tokens", "projections"),
}

#: Image-text models explained zero-shot, with text prompts as the classes: class ->
#: (family, what its image embedding reads: CLIP's projection of the class token, SigLIP's
#: attention-pooling head's probe).
ZERO_SHOT_MODELS: dict[str, tuple[str, str]] = {
    "CLIPModel": ("CLIP", "class"),
    "MetaClip2Model": ("MetaCLIP 2", "class"),
    "SiglipModel": ("SigLIP", "probe"),
}

#: Backbones accepted inside a user's own classifier (see ``docs/models.md``, "Your own
#: head"): class -> (family, capture).
BACKBONES: dict[str, tuple[str, str]] = {
    "DINOv3ViTModel": ("DINOv3", "kernel"),
    "ViTModel": ("ViT", "projections"),
    "Dinov2Model": ("DINOv2", "projections"),
    "Dinov2WithRegistersModel": ("DINOv2", "projections"),
}

#: Backbones whose own embedding is explained with ``references=`` (similarity to reference
#: embeddings as classes; see :mod:`captum_gmar.vit.similarity`), besides the zero-shot
#: models' image towers and timm ViTs created with ``num_classes=0``: class -> (family,
#: what the embedding reads, capture, the output field holding it, the config field of its
#: width). The vision transformer is the model's ``vision_model`` where it has one.
EMBEDDING_MODELS: dict[str, tuple[str, str, str, str, str]] = {
    "Dinov2Model": ("DINOv2", "class", "projections", "pooler_output", "hidden_size"),  # layernorm(CLS)
    "Dinov2WithRegistersModel": ("DINOv2", "class", "projections", "pooler_output", "hidden_size"),
    "DINOv3ViTModel": ("DINOv3", "class", "kernel", "pooler_output", "hidden_size"),
    "ViTModel": ("ViT", "class", "projections", "pooler_output", "hidden_size"),  # tanh(dense(CLS))
    "DeiTModel": ("DeiT", "class", "projections", "pooler_output", "hidden_size"),
    "BeitModel": ("BEiT", "beit", "kernel", "pooler_output", "hidden_size"),
    "Data2VecVisionModel": ("Data2Vec-Vision", "beit", "kernel", "pooler_output", "hidden_size"),
    "CLIPVisionModel": ("CLIP", "class", "projections", "pooler_output", "hidden_size"),  # post_layernorm(CLS)
    "CLIPVisionModelWithProjection": ("CLIP", "class", "projections", "image_embeds", "projection_dim"),
    "MetaClip2VisionModel": ("MetaCLIP 2", "class", "projections", "pooler_output", "hidden_size"),
    "MetaClip2VisionModelWithProjection": ("MetaCLIP 2", "class", "projections", "image_embeds", "projection_dim"),
    "SiglipVisionModel": ("SigLIP", "probe", "projections", "pooler_output", "hidden_size"),
}

#: Image classifiers this package explains, by transformers class name (see ``docs/models.md``).
SUPPORTED_MODEL_CLASSES: tuple[str, ...] = (*CLASSIFIERS, "TimmWrapperForImageClassification")
#: Image-text models explained zero-shot.
ZERO_SHOT_MODEL_CLASSES: tuple[str, ...] = tuple(ZERO_SHOT_MODELS)
#: Backbones accepted inside a user's own classifier.
BACKBONE_MODEL_CLASSES: tuple[str, ...] = tuple(BACKBONES)
#: Backbones whose own embedding is explained with ``references=``.
EMBEDDING_MODEL_CLASSES: tuple[str, ...] = tuple(EMBEDDING_MODELS)

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

#: Metric groups of the comparison, in the order their columns are written: key -> the
#: ``module:Class`` of its :class:`~captum_gmar.evaluation.metrics.base.MetricGroup`,
#: imported when a comparison uses it (see :mod:`captum_gmar.evaluation.metrics.registry`).
METRIC_GROUPS: dict[str, str] = {
    "faithfulness": "captum_gmar.evaluation.metrics.faithfulness:Faithfulness",
    "localisation": "captum_gmar.evaluation.metrics.localisation:Localisation",
    "robustness": "captum_gmar.evaluation.metrics.robustness:Robustness",
    "heads": "captum_gmar.evaluation.metrics.heads:HeadImportance",
    "sanity": "captum_gmar.evaluation.metrics.sanity:Sanity",
}

#: The metric groups' keys (see :func:`captum_gmar.evaluation.runner.compare`).
METRIC_KEYS: tuple[str, ...] = tuple(METRIC_GROUPS)

#: Ablations of GMAR's head weights a comparison can add (see
#: :mod:`captum_gmar.evaluation.diagnostics.ablation`).
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

#: What each reference model was trained on, and at what input size (px; ``None`` for a
#: backbone pretrained on photos of every size): commands name it when they load the model,
#: and warn when they explain images far larger than that input (see
#: :func:`captum_gmar.loading.trained_on_warning`).
REFERENCE_TRAINING: dict[str, tuple[str, int | None]] = {
    "vit-tiny": ("64 px Fashion-MNIST scenes (clothing items on noise), from scratch", 64),
    "dinov2-small": ("112 px Fashion-MNIST scenes (its head and last 4 blocks; the DINOv2-S/14 backbone pretrained on photos)", 112),
    "dinov2-small-backbone": ("photos (DINOv2-S/14's self-supervised pretraining)", None),
}

#: How the signed relevance of AttnLRP and CP-LRP becomes one map per image (the channels
#: summed first): its positive part (the default: evidence for the target, the evidence
#: against it tied at zero), the signed sum (evidence against ranks last, in its order), or
#: its absolute value (evidence for and against alike). See
#: :mod:`captum_gmar.evaluation.methods`.
RELEVANCE_MAPS: tuple[str, ...] = ("positive", "signed", "abs")

#: the most items a comparison's report.html shows the maps of (the page stays a few MB)
GALLERY_MAX = 200
