"""Resolve a model given by name: a reference model, a folder saved with ``save_pretrained``,
or a Hugging Face model id already in the local hub cache (never downloaded).

:func:`model_folder` checks a model reading only its ``config.json``, so that a wrong
model fails before anything loads; :func:`load_model` loads it. The command line's
``--model`` goes through both; they work the same from Python. torch and transformers are
imported only by :func:`load_model`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .names import (
    EMBEDDING_MODEL_CLASSES,
    REFERENCE_MODELS,
    REFERENCE_TRAINING,
    SUPPORTED_FAMILIES,
    SUPPORTED_MODEL_CLASSES,
    ZERO_SHOT_MODEL_CLASSES,
)

if TYPE_CHECKING:
    from .vit.architectures import ForeignModule

__all__ = ["class_names", "describe_model", "hub_snapshot", "load_model", "model_folder", "model_name", "read_config", "trained_on_warning"]

#: the files ``save_pretrained`` writes the weights to, one of which a model folder holds
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: the reference model explained where none is named
DEFAULT_MODEL = "vit-tiny"
#: images at least this many times a reference model's input size (shorter side) are far
#: from what it was trained on: see :func:`trained_on_warning`
FAR_LARGER = 3
#: class names :func:`describe_model` shows before "..."
_SHOWN_CLASSES = 8


def model_folder(spec: str | None, embedding: bool = False) -> Path:
    """The folder holding ``config.json`` of the model ``spec``: a reference model's name
    (``None``: ``vit-tiny``), a folder saved with ``save_pretrained``, or a Hugging Face
    model id in the local hub cache (never downloaded).

    Checks that it holds weights of a supported class, reading only ``config.json``: a
    classifier, or with ``embedding`` (a similarity to explain) an embedding model, a
    zero-shot model or a classifier (whose backbone is then used).

    Raises:
        FileNotFoundError: no such model, or a folder without weights.
        ValueError: a ``config.json`` that cannot be read, or a model of a class this
            package cannot explain (the message says which classes it can).
    """
    if spec is None or spec in REFERENCE_MODELS:  # bundled: the DINOv2 weights are built in the user cache on first load
        folder = Path(__file__).resolve().parent / REFERENCE_MODELS[spec or DEFAULT_MODEL]
    else:
        folder = Path(spec) if Path(spec).exists() else hub_snapshot(spec) or Path(spec)
        if not (folder / "config.json").is_file():
            names = ", ".join(REFERENCE_MODELS)
            raise FileNotFoundError(
                f"model {spec!r} is neither a reference model ({names}), nor a folder with a config.json (save one with save_pretrained), "
                f"nor a model in the Hugging Face cache (download one with: hf download MODEL_ID)"
            )
        if not any((folder / name).is_file() for name in WEIGHTS):
            raise FileNotFoundError(
                f"model folder {spec!r} has a config.json but no weights ({' or '.join(WEIGHTS[::2])}); save the model with save_pretrained"
            )
    architectures = set(read_config(folder).get("architectures") or [])
    embedders = set(EMBEDDING_MODEL_CLASSES) | set(ZERO_SHOT_MODEL_CLASSES)
    if architectures & embedders and not embedding:
        raise ValueError(
            f"model {spec!r} is a {', '.join(sorted(architectures))}, which returns an embedding, not classes: "
            "explain its similarity to reference images with --similar-to (explain) or --task similarity (compare)"
        )
    if architectures and not architectures & (set(SUPPORTED_MODEL_CLASSES) | (embedders if embedding else set())):
        swin = " (windowed attention has no global map to roll out)" if any("swin" in a.lower() for a in architectures) else ""
        embeddings = f"; for similarity, the embedding models {', '.join(EMBEDDING_MODEL_CLASSES)}" if embedding else ""
        raise ValueError(
            f"model {spec!r} is a {', '.join(sorted(architectures))}, which this package cannot explain{swin}; "
            f"supported: {SUPPORTED_FAMILIES} image classifiers ({', '.join(SUPPORTED_MODEL_CLASSES)}){embeddings}"
        )
    return folder


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder of model ``repo_id`` (``"google/vit-base-patch16-224"``) in the local
    Hugging Face cache (``HF_HUB_CACHE``), as ``hf download`` left it; ``None`` where it
    is not cached or ``repo_id`` is not a model id. Nothing is downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None


def read_config(folder: Path) -> dict[str, Any]:
    """The model's ``config.json`` in ``folder``, as a dict.

    Raises:
        ValueError: the file cannot be read or is not JSON.
    """
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {folder / 'config.json'}: {error}") from error


def load_model(spec: str | None, embedding: bool = False) -> ForeignModule:
    """The model ``spec`` (see :func:`model_folder`), in eval mode, loaded offline; with
    ``embedding``, the model whose embedding a similarity compares: an embedding or
    zero-shot model as it is, a classifier's backbone (its ``base_model``).

    Raises:
        FileNotFoundError, ValueError: as :func:`model_folder`; also where the weights do
            not load, or a classifier has no supported backbone to compare embeddings of.
    """
    if spec is None or spec in REFERENCE_MODELS:
        from .reference import load_reference_model

        model = load_reference_model(name=spec or DEFAULT_MODEL)
    else:
        import transformers

        folder = model_folder(spec, embedding)
        named = [
            name for name in read_config(folder).get("architectures") or [] if name in (*EMBEDDING_MODEL_CLASSES, *ZERO_SHOT_MODEL_CLASSES)
        ]
        cls = getattr(transformers, named[0]) if named else transformers.AutoModelForImageClassification
        try:  # from the folder model_folder checked (a cached model's snapshot)
            model = cls.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot load the model in {spec!r}: {error}") from error
    if embedding and type(model).__name__ not in (*EMBEDDING_MODEL_CLASSES, *ZERO_SHOT_MODEL_CLASSES):
        backbone = getattr(model, "base_model", model)
        if backbone is model or type(backbone).__name__ not in EMBEDDING_MODEL_CLASSES:
            raise ValueError(
                f"{model_name(spec)} ({type(model).__name__}) has no backbone among {', '.join(EMBEDDING_MODEL_CLASSES)} whose embedding could be compared"
            )
        return backbone
    return model


def model_name(spec: str | None) -> str:
    """How reports name the model ``spec``: a folder by its own name, a reference model's
    name or a hub model id as given."""
    if spec is None:
        return DEFAULT_MODEL
    return Path(spec).name if Path(spec).is_dir() else spec


def class_names(config: dict[str, Any]) -> list[str]:
    """A classifier's class names in index order, from its ``config.json`` (``id2label``)."""
    id2label = config.get("id2label") or {}
    return [str(id2label[key]) for key in sorted(id2label, key=int)]


def describe_model(spec: str | None, config: dict[str, Any], classes: Sequence[str], kind: str = "classes") -> str:
    """The line a command prints first: the model it loads and what it was trained on
    where the package knows (a reference model), then its ``classes`` (the references or
    prompts that stand for them: name them in ``kind``), e.g. ``model: vit-tiny
    (ViTForImageClassification, trained on 64 px Fashion-MNIST scenes ...); 10 classes:
    T-shirt/top, Trouser, ...``."""
    name = model_name(spec)
    architecture = ", ".join(config.get("architectures") or []) or "model"
    trained = REFERENCE_TRAINING.get(spec or DEFAULT_MODEL) if spec is None or spec in REFERENCE_MODELS else None
    about = f"{architecture}, bundled, trained on {trained[0]}" if trained else architecture
    shown = ", ".join(classes[:_SHOWN_CLASSES]) + (", ..." if len(classes) > _SHOWN_CLASSES else "")
    return f"model: {name} ({about}); {len(classes)} {kind}: {shown}"


def trained_on_warning(spec: str | None, sizes: Sequence[tuple[int, int]]) -> str | None:
    """A warning where a reference model is to explain images (``sizes``: ``(width,
    height)`` of some of them) at least :data:`FAR_LARGER` times its input size on their
    shorter side: its classes and maps then say little about them; ``None`` otherwise."""
    if not (spec is None or spec in REFERENCE_MODELS) or not sizes:
        return None
    trained_on, size = REFERENCE_TRAINING[spec or DEFAULT_MODEL]
    shortest = min(min(width, height) for width, height in sizes)
    if size is None or shortest < FAR_LARGER * size:
        return None
    return (
        f"warning: the images are {shortest} px and more on their shorter side, but {model_name(spec)} was trained on {trained_on}: "
        "its classes and maps say little about such images; name your own model with --model (a folder saved with "
        "save_pretrained, or a model id in the local Hugging Face cache)"
    )
