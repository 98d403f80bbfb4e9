"""captum_gmar: GMAR (gradient-driven multi-head attention rollout) for Hugging Face vision
transformers, as Captum attribution methods::

    from captum_gmar import GMARAttribution
    attr = GMARAttribution(model).attribute(pixel_values, target=c)   # (B, C, H, W)

The names below are imported on first use, so that ``import captum_gmar`` (and the
command line's ``--help``) does not pay for importing torch, transformers and captum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._moved import install as _install_moved_paths

__version__ = "0.1.0"
_install_moved_paths()  # modules that moved stay importable at their old paths

#: public name -> module that defines it
_EXPORTS = {
    "AttentionRollout": ".methods.attention_rollout",
    "AttnLRP": ".methods.lrp",
    "CPLRP": ".methods.lrp",
    "GMARAttribution": ".methods.gmar",
    "GenericAttentionExplainability": ".methods.gae",
    "SUPPORTED_MODEL_CLASSES": ".names",
    "TokenGradCAM": ".methods.gradcam",
    "explain_dataset": ".dataset_maps",
    "explore": ".exploration",
    "find_strategies": ".exploration",
    "load_maps": ".dataset_maps",
    "locate_heads": ".heads",
    "without_heads": ".heads",
    "RawAttention": ".methods.raw_attention",
    "load_reference_model": ".reference",
    "load_sample_scenes": ".reference",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from .dataset_maps import explain_dataset as explain_dataset
    from .dataset_maps import load_maps as load_maps
    from .exploration import explore as explore
    from .exploration import find_strategies as find_strategies
    from .heads import locate_heads as locate_heads
    from .heads import without_heads as without_heads
    from .methods.attention_rollout import AttentionRollout as AttentionRollout
    from .methods.gae import GenericAttentionExplainability as GenericAttentionExplainability
    from .methods.gmar import GMARAttribution as GMARAttribution
    from .methods.gradcam import TokenGradCAM as TokenGradCAM
    from .methods.lrp import CPLRP as CPLRP
    from .methods.lrp import AttnLRP as AttnLRP
    from .methods.raw_attention import RawAttention as RawAttention
    from .names import SUPPORTED_MODEL_CLASSES as SUPPORTED_MODEL_CLASSES
    from .reference import load_reference_model as load_reference_model
    from .reference import load_sample_scenes as load_sample_scenes
