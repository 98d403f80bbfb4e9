"""The planted-shortcut benchmark end to end, found, confirmed and repaired: ``python -m tools.shortcut.end_to_end``.

Usage (each ``O`` a folder ``tools.shortcut.confirm --repair`` wrote, then
``tools.shortcut.repair_check ... --json O/repair_check.json``)::

    python -m tools.shortcut.end_to_end sc/magenta-confirm sc/teal-confirm sc/frame-confirm sc/line-confirm

Prints two Markdown tables and one line per shortcut:

- **found and confirmed**, per shortcut and method: the cluster that best matches the
  marked images (F1), its rank, whether it is flagged, and its transplant rise against
  its control and null (``explore`` with the model pastes every cluster); and the same for
  the model's features, with its direction's rise against random directions' and
  whether no map places it;
- **repaired**, per shortcut: the cluster repaired, the repair ``auto`` chose, the held-out
  transplant rise and accuracy before and after (``repair.json``), and the issue's measure
  on 2,000 test scenes (``repair_check.json``): the share of the effect removed and the
  change of clean top-1;
- which methods find it (a cluster isolating it, F1 at least 0.9, or 0.8 for the
  features, flagged, whatever its rank) and confirm it (its transplant rises
  :data:`~captum_gmar.exploration.transplant.CONFIRMS_BY` beyond its control and its null),
  and what removed it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captum_gmar.exploration.transplant import CONFIRMS_BY
from tools.shortcut.family import ISOLATED

#: the F1 at which a feature cluster isolates a shortcut (the shortcut issue's bar for the
#: features, below the maps' :data:`~tools.shortcut.family.ISOLATED`)
FEATURES_ISOLATED = 0.8

__all__ = ["main"]


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """``confirm.json``, and ``repaired/repair.json`` and ``repair_check.json`` where present."""

    def optional(path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text()) if path.exists() else None

    return (
        json.loads((folder / "confirm.json").read_text()),
        optional(folder / "repaired" / "repair.json"),
        optional(folder / "repair_check.json"),
    )


def _rise(r: dict[str, Any]) -> str:
    rise, control, null = r.get("transplant_rise"), r.get("transplant_control"), r.get("transplant_null")
    if rise is None:
        return "–"
    return f"{rise:+.2f} ({'–' if control is None else f'{control:+.2f}'}, {'–' if null is None else f'{null:+.2f}'})"


def _beyond(r: dict[str, Any]) -> float | None:
    """The rise less the larger of its control and its null (each 0 where missing or falling)."""
    if r.get("transplant_rise") is None:
        return None
    return float(r["transplant_rise"]) - max([0.0] + [r[k] for k in ("transplant_control", "transplant_null") if r.get(k) is not None])


def _features_row(tag: str, f: dict[str, Any]) -> str:
    """The found table's row of the tag class's feature cluster that best matches the tagged
    images: its flag (set by its direction's or tone curve's rise), whether no map places
    it, and its direction's rise against random directions'."""
    random = "–" if f.get("random") is None else f"{f['random']:+.2f} ± {f['random_spread']:.2f}"
    rise = "–" if f.get("rise") is None else f"{f['rise']:+.2f} (random {random})"
    flag = ("yes, confirmed" if f["flagged"] else "no") + (", no place" if f.get("no_place") else "")
    return f"| {tag} | features (layer {f['layer']}) | {f['f1']:.2f} | {f['rank']} | {flag} | {rise} |"


def report(folders: Sequence[Path]) -> str:
    found = ["| shortcut | method | best F1 | its rank | flagged | transplant rise (control, null) |", "|---|---|---|---|---|---|"]
    repaired = [
        "| shortcut | cluster | chosen | held-out rise | held-out accuracy | effect removed | clean top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    lines = []
    for folder in folders:
        confirm, repair, check = _read(folder)
        tag = confirm["tag"]
        isolated_and_flagged, confirmed = [], []
        for method, r in confirm["methods"].items():
            if r.get("f1") is None:
                found.append(f"| {tag} | {method} | not clustered | | | |")
                continue
            beyond = _beyond(r)
            is_confirmed = r["flagged"] and beyond is not None and beyond >= CONFIRMS_BY
            if r["flagged"] and r["f1"] >= ISOLATED:  # it isolates the shortcut, and is flagged, whatever its rank
                isolated_and_flagged.append(method)
                confirmed += [method] if is_confirmed else []
            found.append(
                f"| {tag} | {method} | {r['f1']:.2f} | {r['rank']} | {'yes' if r['flagged'] else 'no'}"
                f"{', confirmed' if is_confirmed else ''} | {_rise(r)} |"
            )
        features = confirm.get("features") or {}
        if features.get("f1") is not None:
            found.append(_features_row(tag, features))
            if features["flagged"] and features["f1"] >= FEATURES_ISOLATED:  # flagged: its direction or curve moved the model
                isolated_and_flagged.append("features")
                confirmed.append("features")
        removal = "not repaired"
        if repair is not None:
            table = {row["repair"]: row for row in repair["table"]}
            before, after = table["none (as it was)"], table[repair["chosen"]]
            measure = "| | |"
            removal = f"{repair['chosen']} chosen (not measured on the test scenes)"
            if check is not None:
                last = check["models"][-1]
                measure = f"| {100 * last['removed']:.0f}% | {100 * last['top1_change']:+.1f} pt |"
                removal = f"{repair['chosen']} removed {100 * last['removed']:.0f}% at {100 * last['top1_change']:+.1f} pt of clean top-1"
            repaired.append(
                f"| {tag} | `{repair['cluster']}` | {repair['chosen']} | {before['transplant_rise']:+.2f} → {after['transplant_rise']:+.2f} | "
                f"{100 * before['accuracy']:.1f}% → {100 * after['accuracy']:.1f}% {measure}"
            )
        lines.append(
            f"- {tag}: isolated and flagged by {', '.join(isolated_and_flagged) or 'no method'}; confirmed by "
            f"{', '.join(confirmed) or 'none'}; {removal}."
        )
    return "\n".join([*found, "", *repaired, "", *lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders tools.shortcut.confirm --repair wrote")
    print(report(parser.parse_args(argv).folders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
