"""The exact and the approximate search compared on the synthetic family (tools/shortcut/searches.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tools.shortcut import searches
from tools.shortcut.family import settings


def test_a_class_above_the_inverted_files_size_keeps_its_clusters_with_the_approximate_search() -> None:
    # 3,000 maps: 46 cells, each map's 8 nearest searched, so the search is approximate
    setting = replace(settings()[300], count=3000)
    row = searches.compare(setting)
    assert row["ari"] >= searches.ARI and row["moved"] <= searches.MOVE, row
    assert 0.0 < row["exact"]["recall"] <= 1.0 and row["exact"]["clusters"] >= 2 and -1.0 <= row["ari_seed"] <= 1.0


def test_the_report_names_the_classes_that_miss_the_agreement() -> None:
    def row(name: str, ari: float, exact: float, approximate: float) -> dict:
        return {
            "name": name,
            "ari": ari,
            "exact": {"recall": exact, "precision": 1.0},
            "approximate": {"recall": approximate, "precision": 1.0},
            "moved": abs(exact - approximate),
            "ari_seed": 1.0,
        }

    text = searches.report([row("kept", 0.999, 0.9, 0.9), row("split", 0.95, 0.9, 0.9), row("moved", 0.999, 0.9, 0.85)])
    assert "| 3 | 0.9500, 0.9990 | 0.67 | 0.67 | 0.33 | 1.00 |" in text
    assert "| split | 0.9500 | 1.0000 |" in text and "| moved | 0.9990 |" in text and "| kept |" not in text


@pytest.mark.slow
def test_the_command_writes_every_chosen_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "searches.json"
    assert searches.main(["--count", "2000", "--every", "724", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert len(results["classes"]) == 2 and results["command"].endswith(f"--out {out}")
    assert "| 2 |" in capsys.readouterr().out
