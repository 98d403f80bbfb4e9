"""``captum-gmar explore MAPS``: a maps folder's strategies and where its methods disagree
(:func:`~captum_gmar.exploration.explore`), written to ``--out`` with the explorer page.
The folders are checked before any map is read; the first line names what is explored."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from .arguments import folder, int_at_least
from .maps_options import ExploreOptions, load_model_of
from .options import CommandError


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``explore``'s parser, among ``commands``."""
    parser = commands.add_parser("explore", help=help, description=help)
    parser.add_argument("maps", type=folder, help="a maps folder, as explain FOLDER (or explain_dataset) wrote it")
    parser.add_argument(
        "--out",
        default="explore",
        help="the folder to write: new, empty, or an earlier explore's, which is replaced (default explore)",
    )
    parser.add_argument("--methods", default=None, help="comma-separated method keys of the maps folder (default: all of them)")
    parser.add_argument("--classes", default=None, help="comma-separated explained classes, by index or name (default: all)")
    parser.add_argument(
        "--clusters", type=int_at_least(2), default=None, help="clusters per method and class (default: chosen by the largest eigengap)"
    )
    parser.add_argument("--max-clusters", type=int_at_least(2), default=10, help="the most clusters the eigengap may choose (default 10)")
    parser.add_argument("--neighbours", type=int_at_least(1), default=10, help="neighbours of each map in the graph (default 10)")
    parser.add_argument(
        "--images",
        type=folder,
        default=None,
        help="the image folder the maps folder's job read: the page shows each image's thumbnail (default: none)",
    )
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="k-means' seed (default 0)")
    parser.add_argument(
        "--workers",
        type=int_at_least(1),
        default=1,
        help="processes clustering method-and-class groups at once (default 1); under torchrun the ranks share the groups too",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the model the job explained (a folder, a bundled model's name): every cluster's region pasted on other classes' "
        "images decides its flag, and each class's images are clustered by the model's features too, for shortcuts with no "
        "place (needs --images; default: no check)",
    )
    parser.add_argument(
        "--feature-layer",
        type=int_at_least(0),
        default=None,
        help="with --model: the layer (from 0) whose patch tokens, pooled, are the features clustered (default: two thirds of the way up, 4 of 6 layers)",
    )
    parser.set_defaults(options=ExploreOptions.from_arguments)


def run(options: ExploreOptions) -> None:
    """Explore ``options.maps`` into ``options.out``: every option checked, and the model
    loaded and checked to be the maps', before the first line is printed."""
    from ..dataset_maps import load_maps
    from ..dataset_maps.checks import read_job
    from ..exploration import explore
    from ..exploration.folder import EXPLORE_FILES
    from ..exploration.reading import check_finished, chosen_methods, chosen_targets
    from ..files import check_folder
    from .output import check_apart

    if options.methods is not None and not options.methods:
        raise CommandError("--methods names no method")
    check_apart(options.out, {"the maps folder": options.maps, "--images": options.images})
    check_folder(options.out, EXPLORE_FILES)
    records = load_maps(options.maps)
    check_finished(options.maps, records)
    job = read_job(options.maps) or {}
    methods = chosen_methods(options.maps, options.methods) or list(job.get("methods", {}))
    chosen_targets(options.maps, records, options.classes)
    model = None if options.model is None else load_model_of(options.maps, options.model)
    if model is not None:
        from ..exploration.features import check_layer
        from ..vit.model import VisionTransformer

        try:
            check_layer(options.feature_layer, VisionTransformer(model).num_layers)
        except ValueError as error:
            raise CommandError(f"--feature-layer: {error}") from None
    targets = Counter((record.target, record.target_name) for record in records if record.method == methods[0]) if methods else Counter()
    shown = ", ".join(f"{name} ({count:,})" for (_, name), count in sorted(targets.items())[:5]) + (", ..." if len(targets) > 5 else "")
    print(
        f"exploring {options.maps}: {records.images:,} images explained by {job.get('model', 'a model')}, "
        f"{len(records):,} maps of {len(job.get('methods', {}))} methods (exploring {', '.join(methods)}); "
        f"{len(targets)} explained classes: {shown}",
        flush=True,
    )
    from ..evaluation.distributed import process_group

    with process_group("cpu"):  # under torchrun, the ranks share the groups; a single process needs none
        result = explore(
            options.maps,
            options.out,
            methods=options.methods,
            classes=options.classes,
            images=options.images,
            n_clusters=options.clusters,
            max_clusters=options.max_clusters,
            neighbours=options.neighbours,
            seed=options.seed,
            model=model,
            feature_layer=options.feature_layer,
            workers=options.workers,
        )
    if result is None:  # another rank than 0: rank 0 writes and reports
        return
    clustered = len(result.strategies)
    flagged = result.flagged()
    confirmed = sum(g["confirmed"] for g in result.summary["groups"] if g.get("clusters"))
    by_model = result.summary.get("flag_by_transplant") is not None  # the transplant decided the flag
    how = " by the transplant" if by_model else f" ({confirmed} confirmed by the transplant)" if confirmed else ""
    print(
        f"wrote {', '.join(result.files)} to {result.folder} ({clustered} method-and-class groups clustered"
        f"{f', {len(result.skipped)} too small' if result.skipped else ''}); "
        + (
            f"{len(flagged)} cluster{'' if len(flagged) == 1 else 's'} flagged{how}, "
            f"the first: {flagged[0][0]}, "
            f"{flagged[0][1]}: {result.summary['class_names'][str(flagged[0][1])]}, cluster #{_rank(result, *flagged[0])} of its group"
            if flagged
            else "no flagged cluster: nothing stands out"
            + (" (every cluster's region pasted on other classes' images: none rose beyond its control and its null)" if by_model else "")
        )
        + _in_features(result)
        + f"; open {result.folder / 'explore.html'} in a browser"
    )


def _in_features(result: Any) -> str:
    """What the model's features found, for the last line (nothing without a model)."""
    features = result.summary.get("features")
    if features is None:
        return ""
    flagged = [(g, c) for g in features["groups"] for c in g.get("clusters", []) if c["flagged"]]
    where = f"in the model's features (layer {features['layer']})"
    if not flagged:
        return (
            f"; {where}: no shortcut with no place (no cluster that no map isolates raised the class beyond its null, by its "
            "direction, its tone curve or its filter)"
        )
    group, cluster = flagged[0]
    rises = ", ".join(f"its {name}'s rise {cluster[name]['rise']:+.3f}" for name in cluster["confirmed_by"])
    return (
        f"; {where}: {len(flagged)} shortcut{'' if len(flagged) == 1 else 's'} with no place, the first: {group['target_name']}, "
        f"feature cluster {cluster['cluster']} ({cluster['size']} images"
        f"{', joined from ' + ' + '.join(map(str, cluster['parts'])) if cluster.get('parts') else ''}, confirmed by {rises})"
    )


def _rank(result: Any, method: str, target: int, cluster: Any) -> int:
    """A cluster's rank in its group, 1 the most suspicious (as the page and ``heads`` number it)."""
    return result.strategies[method, target].ranking.index(cluster) + 1
