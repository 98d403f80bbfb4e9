"""Rebuild a reference model's bundled scenes: ``python -m tools.reference.rebuild_samples``.

The rule and seed are in :mod:`captum_gmar.reference.samples`; this command lives apart
because it loads the model through the package, which imports that module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import AutoModelForImageClassification

from captum_gmar.reference import load_reference_model
from captum_gmar.reference.samples import SAMPLES_PATHS, make_sample_scenes


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild a reference model's bundled scenes (default: those of ``vit-tiny``)."""
    p = argparse.ArgumentParser(prog="python -m tools.reference.rebuild_samples")
    p.add_argument("--name", choices=list(SAMPLES_PATHS), default="vit-tiny", help="reference model")
    p.add_argument("--model", type=Path, default=None, help="load the model from this folder instead")
    p.add_argument("--out", type=Path, default=None, help="default: the model's bundled file")
    p.add_argument("--data-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.model is None:
        model = load_reference_model(args.name)
    else:
        model = AutoModelForImageClassification.from_pretrained(args.model, local_files_only=True).eval()
    args.out = args.out or SAMPLES_PATHS[args.name]
    s = make_sample_scenes(model, data_dir=args.data_dir)
    np.savez_compressed(args.out, images=s.images, labels=s.labels, masks=s.masks, num_items=s.num_items)
    print(f"wrote {len(s)} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
