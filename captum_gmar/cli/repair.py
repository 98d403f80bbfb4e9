"""``captum-gmar repair MAPS --model M --cluster METHOD:CLASS:RANK --images FOLDER --data FOLDER --out DIR``:
the model repaired of a confirmed shortcut (:func:`~captum_gmar.repair.repair`): a cluster
of a method's maps (its region's mark pasted, or its images' pixel proxies where that would
be its whole region), or ``features:CLASS:RANK``, a cluster of the
model's features at ``--feature-layer`` (its images' pixel proxies that confirm it), saved in
``DIR`` as a standard model folder (config, weights, image processor: ``from_pretrained(DIR)``
and ``explain --model DIR`` load it), with ``repair.json`` and ``repair.md`` beside it:
each repair's transplant rise and clean accuracy, before and after, and the time."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .arguments import float_between, folder, int_at_least
from .maps_options import RepairOptions
from .options import CommandError

#: what ``--out`` holds beside the model's own files
FILES = ("repair.json", "repair.md", "config.json", "model.safetensors", "preprocessor_config.json")


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``repair``'s parser, among ``commands``."""
    parser = commands.add_parser("repair", help=help, description=help)
    parser.add_argument("maps", type=folder, help="a maps folder, as explain FOLDER (or explain_dataset) wrote it")
    parser.add_argument("--model", required=True, help="the model the job explained: a folder, or a bundled model's name")
    parser.add_argument(
        "--cluster",
        required=True,
        help="METHOD:CLASS:RANK, the shortcut's cluster as explore ranks it (e.g. attnlrp:Shirt:1); "
        "features:CLASS:RANK for a cluster of the model's features (a shortcut with no place)",
    )
    parser.add_argument("--images", type=folder, required=True, help="the image folder the maps folder's job read")
    parser.add_argument(
        "--data", type=folder, required=True, help="labelled images of every class, one folder per class (usually training images)"
    )
    parser.add_argument(
        "--out", default="repaired", help="the repaired model's folder (default repaired): new, empty, or an earlier repair's"
    )
    parser.add_argument(
        "--how",
        choices=["auto", "heads", "finetune", "classifier", "project", "refit"],
        default="auto",
        help="heads (remove the heads that carry it), finetune (a counterfactual fine-tune), classifier (the same on the classifier "
        "alone, the backbone left as it was: for a frozen backbone and its probe), project (the directions the shortcut moves the "
        "classifier's inputs in projected out of a linear classifier, nothing trained), refit (project, then the classifier "
        "fitted again blind to those directions on the images that do not carry the shortcut) or auto (default: heads, then project, "
        "then refit, then finetune, until one removes nine tenths of the rise within the budget as measured, takes the class's lead on the "
        "cluster's own images and does not call the rest of the class less often beyond chance, and, after project, refit too; all four against a change drawn afresh "
        "on every image with a lead on the cluster's own images to judge, of those that take it the one that leaves the least "
        "root mean square of its rises kept)",
    )
    parser.add_argument(
        "--budget", type=float_between(0, 100), default=1.0, help="the clean accuracy a repair may cost, in points, 0 to 100 (default 1)"
    )
    parser.add_argument("--steps", type=int_at_least(1), default=300, help="the fine-tune's steps (default 300)")
    parser.add_argument("--max-images", type=int_at_least(1), default=2000, help="the most --data images read (default 2000)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="the held-out fifth, the draws and the fine-tune (default 0)")
    parser.add_argument(
        "--feature-layer",
        type=int_at_least(0),
        default=None,
        help="with --cluster features:CLASS:RANK: the layer its features were clustered at, as explore's --feature-layer (default: its default)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="repair the cluster even where the model does not confirm it as a shortcut (its transplant, or for features:CLASS:RANK "
        "its direction and proxies, as explore --model checks them): the repair then removes what the model reads there, which "
        "may be the class's own object",
    )
    parser.set_defaults(options=RepairOptions.from_arguments)


def run(options: RepairOptions) -> None:
    """Repair the model of ``options.cluster``; save it and the report in ``options.out``."""
    from .output import check_apart, check_output

    check_apart(options.out, {"the maps folder": options.maps, "--images": options.images, "--data": options.data})
    check_output(options.out, figure=False, files=FILES)
    from .. import loading
    from ..exploration.transplant import CONFIRMS_BY
    from ..files import claim_files, write_atomic
    from ..repair import repair
    from .repair_shortcut import read_shortcut

    cluster, model, processor, shortcut, data = read_shortcut(options)
    if "layer" in cluster.recorded:
        rises = ", ".join(f"{p['put_on'].split(',')[0]} {p['rise']:+.3f}" for p in cluster.recorded["proxies"])
        kept = sum(p["kept"] for p in cluster.recorded["proxies"])
        print(
            f"note: a shortcut with no place is measured here through {'proxies' if kept > 1 else 'a proxy'}, "
            f"{cluster.put_on}: of "
            f"{len(cluster.recorded['proxies'])}, those that raise the class by {CONFIRMS_BY} at least "
            f"on other classes' training images (the class's rise: {rises}); check the repaired model on images that carry the "
            "shortcut itself (docs/repair.md: on the planted models, repaired through a proxy, the drawn shortcut's effect fell by "
            "62% to 103%, by model and shortcut)",
            file=sys.stderr,
            flush=True,
        )
    # a cluster of maps put on through its images' proxies (repair_put_on.mark_or_proxies)
    elif cluster.recorded.get("pasted") == "proxies":
        kept = "; or ".join(p["put_on"] for p in cluster.recorded["proxies"] if p["kept"])
        print(
            "note: the cluster's mark would be its whole region (it fills the region, or does not raise the class by "
            f"{CONFIRMS_BY} on its own), a patch of what its images share at one place: it is put on through its images' pixel "
            f"proxies that raise the class by {CONFIRMS_BY} at least on other classes' training images ({kept}); check the "
            "repaired model on images that carry the shortcut itself (docs/repair.md)",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"repairing {loading.model_name(options.model)} of {options.cluster} ({cluster.size} images, {cluster.where}) with "
        f"{options.how}, on {len(data)} labelled images of {options.data} (a fifth held out)",
        flush=True,
    )
    done = repair(model, shortcut, data, options.how, budget=options.budget / 100, steps=options.steps, seed=options.seed)
    if done.chosen is None or done.chosen.model is None:
        refused = "; ".join(f"{a.how}: {a.refused}" for a in done.attempts)
        raise CommandError(f"no repair could run on this model ({refused})")
    out = Path(options.out)
    claim_files(out, FILES)
    chosen: Any = done.chosen.model  # a transformers model of the input's class
    chosen.save_pretrained(out)
    processor.save_pretrained(out)
    table = done.table()
    report: dict[str, Any] = {
        "maps": str(options.maps),
        "cluster": options.cluster,
        "class": cluster.target,
        "class_name": cluster.target_name,
        "put_on": cluster.put_on,
        "confirmed": cluster.confirmed,
        "evidence": cluster.evidence,
        "forced": bool(options.force and cluster.confirmed is False),
        **cluster.recorded,
        "chosen": done.chosen.how,
        "table": table,
        "changed": {a.how: a.changed for a in done.attempts},
        "per_class_after": {a.how: a.after.per_class for a in done.attempts if a.after is not None},
        "per_class_before": done.before.per_class,
        "warnings": _warnings(table, done.chosen.how, cluster.put_on, done.before.drawn),
    }
    write_atomic(out / "repair.json", json.dumps(report, indent=1) + "\n")
    names = {int(label): str(n) for label, n in (model.config.id2label or {}).items()}
    summary = _markdown(options, cluster.target_name, table, done.chosen.how, names, cluster.put_on, done.before.drawn)
    write_atomic(out / "repair.md", summary)
    print(summary)
    print(f"saved the model repaired by {done.chosen.how} in {out}: from_pretrained({str(out)!r}), or explain --model {out}")


def _markdown(
    options: RepairOptions,
    name: str,
    table: list[dict[str, Any]],
    chosen: str,
    class_names: Mapping[int, str],
    put_on: str,
    drawn: bool = False,
) -> str:
    def cell(value: Any, points: bool = False) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" if points else f"{value:+.3f}" if isinstance(value, float) else str(value)

    def cost(row: dict[str, Any]) -> str:
        if row["cost_points"] is None or row["repair"] == table[0]["repair"]:
            return "–"
        error = row["cost_error_points"]
        spread = "" if error is None or error != error else f" ± {error:.1f}"  # NaN: no paired images
        return f"{-row['cost_points']:+.1f}{spread}" + (" (over the budget)" if row["over_budget"] else "")

    def pair(row: dict[str, Any], cluster: str, rest: str, points: bool) -> str:
        if row[cluster] is None:
            return "–"
        return f"{100 * row[cluster]:.0f}%, {100 * row[rest]:.0f}%" if points else f"{row[cluster]:.3f}, {row[rest]:.3f}"

    def rise(row: dict[str, Any]) -> str:
        error, rms = row["transplant_rise_error"], row["transplant_rise_rms"]
        spread = "" if error is None or row["transplant_rise"] is None else f" ± {error:.3f}"
        return cell(row["transplant_rise"]) + spread + (f" (root mean square {rms:.3f})" if drawn and rms is not None else "")

    def worst(row: dict[str, Any]) -> str:
        label = row["worst_class"]
        return "–" if label is None else f"{class_names.get(label, label)} {cell(row['worst_class_accuracy'], True)}"

    first = table[0]
    lines = [
        f"Repair of {options.cluster} ({name}) in {options.model}; chosen: {chosen}; budget: {options.budget:g} points of clean "
        f"accuracy. The transplant rise: the class's mean probability rise with {put_on} on held-out images of other classes, "
        "± its standard error"
        + (
            " (drawn afresh on every image, its rises cancel in their mean: what is left shows in their root mean square, "
            "by which auto, where the lead on the cluster's own images can be judged, tries every repair and keeps the least of "
            "those that take it)"
            if drawn
            else ""
        )
        + "; removed: the share of the rise before that is gone (where that rise stands beyond twice its "
        "error); clean accuracy: top-1 on the "
        f"{first['clean_images']} held-out images that do not carry the shortcut (its class's images nearer its own images' "
        "features than the rest of the class's left out, which the shortcut alone may have got right); change: its cost in "
        f"points ± its standard error (one image is {100 / max(first['clean_images'] or 1, 1):.2f} points: more labelled "
        "images narrow it). The cluster's own images carry the shortcut itself, not its mark or proxy: class score: the "
        "class's mean probability on them and on the rest of the class's images; called the class: the share of each whose "
        "top-1 is the class; lead gone: the share of the first score's lead over the second that the repair took away (over "
        "100%: they now score below the rest; below 0: the lead grew).",
        "",
        "| repair | transplant rise | removed | clean accuracy | change (points) | worst class | class score: cluster, rest "
        "| called the class: cluster, rest | lead gone | seconds | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['repair']} | {rise(row)} | {cell(row['removed'], True) if row is not table[0] else '–'} | "
            f"{cell(row['accuracy'], True)} | {cost(row)} | {worst(row)} | "
            f"{pair(row, 'own_images_score', 'rest_of_class_score', False)} | "
            f"{pair(row, 'own_images_called', 'rest_of_class_called', True)} | "
            f"{cell(row['lead_removed'], True) if row is not table[0] else '–'} | {row['seconds']:.0f} | {row['note'] or ''} |"
        )
    warnings = _warnings(table, chosen, put_on, drawn)
    return "\n".join(lines + [line for warning in warnings for line in ("", warning)]) + "\n"


def _warnings(table: list[dict[str, Any]], chosen: str, put_on: str, drawn: bool = False) -> list[str]:
    """What the report warns of: a shortcut, as put on, that raises the class on the
    held-out images by no more than twice the rise's standard error (no share of it removed
    is given: :meth:`~captum_gmar.repair.Measurement.rise_stands`); and of the repair kept,
    from the cluster's own images against the rest of its class: it took less of the
    class's lead on them than :data:`~captum_gmar.repair.REACHES` (where there was lead
    enough to judge: :data:`~captum_gmar.repair.LEADS`), it misses the class on them
    (``misses_own_images``: :meth:`~captum_gmar.repair.OwnImages.called_less`, where the
    model as it was did not), or it calls the class on the rest of the class's images less
    often (``costs_class``: :meth:`~captum_gmar.repair.OwnImages.costs_class`). Against a
    change drawn afresh (``drawn``), whose rises cancel in their mean, the share of the rise
    removed is given with its rises' root mean square before and after."""
    from ..repair import REACHES

    first = table[0]
    warnings = []
    if first["removed"] is None:  # the model as it was: 0 where its rise stands, else none given
        error = first["transplant_rise_error"]
        warnings.append(
            f"Warning: with {put_on} the class's score changes by {first['transplant_rise']:+.3f}"
            f"{'' if error is None else f' ± {error:.3f}'} on the held-out images of other classes, no rise beyond twice its "
            "standard error: a rise cannot be told from noise on these images, so no share of it removed is given, and none "
            "of the repairs counts as removing it. A cluster the transplant did not confirm (--force) may not be a shortcut, "
            "or the shortcut may lie beyond what was put on; the lead on the cluster's own images is then the measure "
            "(docs/repair.md)."
        )
    row = next((row for row in table[1:] if row["repair"] == chosen), None)
    if row is None:
        return warnings
    gone = row["lead_removed"]
    if gone is not None and gone < REACHES:
        took = f"took away {100 * gone:.0f}% of" if gone >= 0 else f"did not take away (it grew by {-100 * gone:.0f}%)"
        proxy, before_rms, after_rms = "", first["transplant_rise_rms"], row["transplant_rise_rms"]
        if row["removed"] is not None:
            spread = ""
            if drawn and before_rms is not None and after_rms is not None:
                spread = f"'s mean; its rises' root mean square went from {before_rms:.3f} to {after_rms:.3f}"
            proxy = f" (it removed {100 * row['removed']:.0f}% of the transplant rise{spread})"
        warnings.append(
            f"Warning: {chosen} {took} the class's lead on the cluster's own images over the rest of the class's images"
            f"{proxy}. The repaired model may still follow the shortcut on images of its class, or the shortcut may reach "
            "beyond what the repair put on (a part of it found, or a proxy that falls short); check it on images that carry "
            "the shortcut itself (docs/repair.md)."
        )
    if row["misses_own_images"]:
        warnings.append(
            f"Warning: {chosen} calls the class on {100 * row['own_images_called']:.0f}% of the cluster's own images and on "
            f"{100 * row['rest_of_class_called']:.0f}% of the rest of the class's ({100 * first['own_images_called']:.0f}% and "
            f"{100 * first['rest_of_class_called']:.0f}% before): images of the class that carry the shortcut may now be missed, "
            "where a model that no longer follows it would read them as the rest; try another repair (--how), which may not "
            "miss them (docs/repair.md)."
        )
    if row["costs_class"]:
        warnings.append(
            f"Warning: {chosen} calls the class on {100 * row['rest_of_class_called']:.0f}% of the rest of the class's images, "
            f"which are not the cluster's ({100 * first['rest_of_class_called']:.0f}% before), fewer beyond chance (McNemar's "
            "test): the repair costs the class's own evidence, which the clean accuracy over every class, on a "
            "few held-out images of this one, may not show; check the class's accuracy on more labelled images, or try "
            "another repair (--how) (docs/repair.md)."
        )
    return warnings
