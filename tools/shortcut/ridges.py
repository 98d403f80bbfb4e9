"""The projection's ridges, measured as docs/repair.md's ridge table: ``python -m tools.shortcut.ridges``.

Usage::

    python -m tools.shortcut.ridges --model sc/blur --tag blur --out sc/blur-confirm --cluster features:6:1 --feature-layer 4 --drawn

``--out``: the folder ``tools.shortcut.confirm`` wrote (``maps``, ``images``, ``data``). The
shortcut and its directions are taken as ``captum-gmar repair ... --how project`` takes them
(its proxy, on the training images of the repair's seed 0). The first 1 to ``--k``
directions are folded into a copy of the classifier through each ridge and judged on the
2,000 test scenes of ``tools.shortcut.repair_check`` with the tag drawn on the other
classes' items: the share of the effect removed, clean top-1's change, the tag class's
clean top-1. A projection leaves the backbone as it was, so the classifier's inputs are
taken once. ``--drawn`` adds the directions of the tag itself, drawn on 600 training
scenes of all classes (seed 4242) and taken as the command takes its proxy's, with the two
first directions' cosine and the share of the drawn changes' squared norm the first ``k``
hold. ``--pattern`` adds the directions with the cluster's own pattern first: its images'
mean classifier input less the rest of the class's (P-ClArC's pattern from the images that
carry the artifact), then the proxy's, each less its part along those before. ``--proxy``
takes others of a ``features:`` cluster's proxies than those the command takes (one drawn per image where several, as the command puts them on). ``--strengths`` folds a share of each projection in (a gentler one below 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import captum_gmar.repair as repair_module
from captum_gmar.cli.repair import add_parser
from captum_gmar.cli.repair_shortcut import read_shortcut
from captum_gmar.repair import Shortcut
from captum_gmar.repair.project import RIDGES, Projection, change_directions, linear_classifier, projection
from tools.shortcut.repair_check import _scenes
from tools.shortcut.tag import TAGS, plant_tag
from tools.shortcut.train import class_scenes, logits

__all__ = ["main"]

DRAWN_SCENES, DRAWN_SEED = 600, 4242


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True, help="the folder tools.shortcut.confirm wrote")
    parser.add_argument("--cluster", required=True, help="as repair --cluster takes it, e.g. features:6:1")
    parser.add_argument("--feature-layer", type=int, default=None)
    parser.add_argument("--ridges", type=float, nargs="+", default=list(RIDGES))
    parser.add_argument("--k", type=int, default=4, help="directions, 1 to k")
    parser.add_argument("--drawn", action="store_true", help="also the directions of the tag itself")
    parser.add_argument("--pattern", action="store_true", help="also the cluster's own pattern first, then the proxy's directions")
    parser.add_argument(
        "--proxy",
        type=int,
        choices=[1, 2, 3],
        nargs="+",
        default=None,
        help="a features: cluster's proxies taken in repair's order (1 the tone curve, 2 the filter, 3 the mean difference), "
        "one of them drawn per image where several; default: those repair takes, each that raises the class by 0.2",
    )
    parser.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        default=[1.0],
        help="the share of each projection folded in (default 1, all of it): a gentler projection below 1",
    )
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    repair_parser = argparse.ArgumentParser()
    add_parser(repair_parser.add_subparsers(dest="command"), "repair")
    repair_argv = [
        "repair", str(args.out / "maps"), "--model", str(args.model), "--cluster", args.cluster,
        "--images", str(args.out / "images"), "--data", str(args.out / "data"), "--out", str(args.out / "unused"),
    ]  # fmt: skip
    if args.feature_layer is not None:
        repair_argv += ["--feature-layer", str(args.feature_layer)]
    parsed = repair_parser.parse_args(repair_argv)
    if args.proxy is not None:  # repair's choice of proxies replaced by those named, its rises still printed
        chosen = repair_module.confirmed_by

        def named(shortcuts: list[Shortcut], *rest: Any, **options: Any) -> tuple[Shortcut, list[float]]:
            rises = chosen(shortcuts, *rest, **options)[1]
            picked = [shortcuts[p - 1] for p in args.proxy]
            return (Shortcut.one_of(picked) if len(picked) > 1 else picked[0]), rises

        repair_module.confirmed_by = named  # type: ignore[assignment]
    _, model, _, shortcut, data = read_shortcut(parsed.options(parsed))  # RepairOptions, checked as the command checks them
    print(f"put on: {shortcut.intervention.describe()}")
    train, _ = data.split(0.2, 0)  # the repair's own split (seed 0)
    proxy = projection(model, shortcut, train, args.k)

    classifier = linear_classifier(model)
    captured: list[Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach().float()))

    def inputs(images: np.ndarray) -> Tensor:
        captured.clear()
        logits(model, images)
        return torch.cat(captured)

    tag = TAGS[args.tag]
    images, labels_array = _scenes()
    labels = torch.as_tensor(labels_array)
    others = labels != args.tag_class
    clean = inputs(images)
    tagged = inputs(plant_tag(images[others.numpy()], np.ones(int(others.sum()), dtype=bool), tag))
    sources = {"proxy": proxy.directions}
    if args.pattern:  # the cluster's images' mean input less the rest's, then the proxy's directions, Gram-Schmidt
        if shortcut.rest is None:
            parser.error("--pattern needs the rest of the cluster's class, and the cluster holds every image of it")

        def read(pixels: Tensor) -> Tensor:  # the classifier's inputs on pixel values as the model reads them
            captured.clear()
            model(pixel_values=pixels)
            return torch.cat(captured)

        pattern = read(shortcut.members).mean(0) - read(shortcut.rest).mean(0)
        stacked = torch.cat([pattern[None].to(proxy.directions.dtype), proxy.directions])
        sources["pattern"] = torch.linalg.qr(stacked.double().T)[0].T.to(proxy.directions.dtype)
    if args.drawn:
        pool = class_scenes(DRAWN_SCENES, list(range(10)), DRAWN_SEED).images
        change = inputs(plant_tag(pool, np.ones(len(pool), dtype=bool), tag)) - inputs(pool)
        sources["drawn"], share = change_directions(change, args.k)
        print(f"cosine of the first directions, the proxy's and the drawn tag's: {float(proxy.directions[0] @ sources['drawn'][0]):.3f}")
        for k, held in enumerate(share.tolist(), 1):
            print(f"the drawn changes' squared norm in the first {k}: {held:.0%}")
    hook.remove()

    weight, bias = classifier.weight.detach().double(), classifier.bias.detach().double()

    def judged(w: Tensor, b: Tensor) -> tuple[float, float, float]:
        def score(x: Tensor) -> Tensor:
            return torch.sigmoid(x.double() @ w.T + b)[:, args.tag_class]

        right = (clean.double() @ w.T + b).argmax(1) == labels
        effect = float(score(tagged).mean() - score(clean[others]).mean())
        return effect, float(right.float().mean()), float(right[~others].float().mean())

    effect, top1, own = judged(weight, bias)
    print(f"original: effect {effect:+.3f}, clean top-1 {top1:.1%}, the tag class's {own:.1%}")
    print("| directions | ridge | k | strength | removed | top-1 | the tag class's top-1 |\n|---|---|---|---|---|---|---|")
    for name, directions in sources.items():
        found = Projection(directions, proxy.reference, proxy.covariance, proxy.share)
        for ridge in args.ridges:
            for k in range(1, len(directions) + 1):
                edited = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
                edited.weight.copy_(weight)
                edited.bias.copy_(bias)
                found.fold(edited, k, ridge)
                for strength in args.strengths:  # the fold is linear in its change: a share of it is a share of the projection
                    w = weight + strength * (edited.weight - weight)
                    after, top1_after, own_after = judged(w, bias + strength * (edited.bias - bias))
                    print(
                        f"| {name} | {ridge:g} | {k} | {strength:g} | {1 - after / effect:.0%} | {100 * (top1_after - top1):+.1f} pt "
                        f"| {own_after:.1%} |"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
