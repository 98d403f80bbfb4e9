"""captum_gmar: GMAR (gradient-driven multi-head attention rollout) for Hugging Face vision
transformers, as Captum attribution methods.

    from captum_gmar import GMARAttribution
    attr = GMARAttribution(model).attribute(pixel_values, target=c)   # (B, C, H, W)
"""

from .attention_rollout import AttentionRollout
from .gae import GenericAttentionExplainability
from .gmar import GMARAttribution
from .gradcam import TokenGradCAM
from .models import SUPPORTED_MODEL_CLASSES
from .reference import load_reference_model, load_sample_scenes

__version__ = "0.1.0"

__all__ = [
    "AttentionRollout",
    "GMARAttribution",
    "GenericAttentionExplainability",
    "SUPPORTED_MODEL_CLASSES",
    "TokenGradCAM",
    "load_reference_model",
    "load_sample_scenes",
    "__version__",
]
