"""Names shared by the package and its command line, importable without torch.

The command line's parser needs the method keys, metric groups and supported classes to
answer ``--help`` and reject bad arguments at once; importing torch and transformers
would take seconds. Nothing here imports more than the standard library.
"""

from __future__ import annotations

#: Classification models this package explains, by transformers class name.
SUPPORTED_MODEL_CLASSES: tuple[str, ...] = (
    "ViTForImageClassification",
    "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "Dinov2ForImageClassification",
    "Dinov2WithRegistersForImageClassification",
)

#: The model families of :data:`SUPPORTED_MODEL_CLASSES`, for messages.
SUPPORTED_FAMILIES = "ViT, DeiT (with or without teacher), DINOv2 and DINOv2 with registers"

#: Methods of the comparison, in display order (see :mod:`captum_gmar.evaluation.methods`).
METHOD_KEYS: tuple[str, ...] = ("gmar-l1", "gmar-l2", "rollout", "gae", "gradcam", "ig", "saliency")

#: Metric groups of the comparison (see :func:`captum_gmar.evaluation.runner.compare`).
METRIC_KEYS: tuple[str, ...] = ("faithfulness", "localisation", "robustness", "heads")

#: Reference models shipped with the package: name -> folder (relative to the package)
#: holding their ``config.json`` (see :func:`captum_gmar.reference.load_reference_model`).
REFERENCE_MODELS: dict[str, str] = {"vit-tiny": "reference/model"}
