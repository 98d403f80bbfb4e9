"""The end-to-end report: found, confirmed and repaired, read from the files the scripts write."""

from __future__ import annotations

import json
from pathlib import Path

from tools.shortcut.end_to_end import report


def _write(folder: Path, check: bool) -> None:
    methods = {
        "attnlrp": {"f1": 0.99, "rank": 3, "flagged": True, "transplant_rise": 0.9, "transplant_control": 0.02, "transplant_null": 0.05},
        "gae": {"f1": 0.95, "rank": 1, "flagged": True, "transplant_rise": 0.15, "transplant_control": 0.0},  # rises too little
        "gmar-l1": {
            "f1": 0.9,
            "rank": 1,
            "flagged": True,
            "transplant_rise": 0.9,
            "transplant_control": 0.0,
            "transplant_null": 0.8,
        },  # as its null
        "rollout": {"f1": 0.3, "rank": 4, "flagged": False, "transplant_rise": None, "transplant_control": None},
    }
    (folder / "repaired").mkdir(parents=True)
    (folder / "confirm.json").write_text(json.dumps({"tag": "frame", "tag_class": 6, "methods": methods}))
    table = [
        {"repair": "none (as it was)", "transplant_rise": 0.94, "accuracy": 0.905},
        {"repair": "heads", "transplant_rise": 0.89, "accuracy": 0.895},
        {"repair": "finetune", "transplant_rise": 0.04, "accuracy": 0.865},
    ]
    (folder / "repaired" / "repair.json").write_text(json.dumps({"cluster": "attnlrp:6:1", "chosen": "finetune", "table": table}))
    if check:
        models = [{"removed": 0.0, "top1_change": 0.0}, {"removed": 0.96, "top1_change": -0.002}]
        (folder / "repair_check.json").write_text(json.dumps({"models": models}))


def test_the_report_says_who_found_confirmed_and_what_removed_it(tmp_path: Path) -> None:
    _write(tmp_path / "a", check=True)
    text = report([tmp_path / "a"])
    assert "| frame | attnlrp | 0.99 | 3 | yes, confirmed | +0.90 (+0.02, +0.05) |" in text  # ranked third: still found
    assert "| frame | gae | 0.95 | 1 | yes | +0.15 (+0.00, –) |" in text and "| frame | rollout | 0.30 | 4 | no | – |" in text
    assert "| frame | gmar-l1 | 0.90 | 1 | yes | +0.90 (+0.00, +0.80) |" in text  # no more than the class's own images moved there
    assert "| frame | `attnlrp:6:1` | finetune | +0.94 → +0.04 | 90.5% → 86.5% | 96% | -0.2 pt |" in text
    assert (
        "- frame: isolated and flagged by attnlrp, gae, gmar-l1; confirmed by attnlrp; finetune removed 96% at -0.2 pt of clean top-1."
        in text
    )


def test_a_repair_not_checked_on_the_test_scenes_says_so(tmp_path: Path) -> None:
    _write(tmp_path / "b", check=False)
    assert "finetune chosen (not measured on the test scenes)" in report([tmp_path / "b"])


def test_the_features_cluster_is_a_row_and_finds_a_shortcut_with_no_place(tmp_path: Path) -> None:
    _write(tmp_path / "c", check=True)
    confirm = json.loads((tmp_path / "c" / "confirm.json").read_text())
    confirm["features"] = {
        "layer": 4,
        "f1": 0.85,
        "rank": 2,
        "flagged": True,
        "no_place": True,
        "rise": 0.53,
        "random": 0.02,
        "random_spread": 0.03,
    }
    (tmp_path / "c" / "confirm.json").write_text(json.dumps(confirm))
    text = report([tmp_path / "c"])
    assert "| frame | features (layer 4) | 0.85 | 2 | yes, confirmed, no place | +0.53 (random +0.02 ± 0.03) |" in text
    assert "isolated and flagged by attnlrp, gae, gmar-l1, features; confirmed by attnlrp, features;" in text
    confirm["features"].update(f1=0.7, random=None)  # isolates it too little to count; its random directions not drawn
    (tmp_path / "c" / "confirm.json").write_text(json.dumps(confirm))
    text = report([tmp_path / "c"])
    assert "| 0.70 | 2 | yes, confirmed, no place | +0.53 (random –) |" in text and "confirmed by attnlrp;" in text
