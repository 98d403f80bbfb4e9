"""``compare`` and ``demo`` on fixed seeds give the results they gave before the package
was restructured: every metric of every row of ``results.csv`` and every entry of
``summary.json``, timings and memory aside (they depend on the machine).

The expected files in ``tests/data/unchanged/`` were written by the commands below on
torch 2.13.0 (CPU) and transformers 5.24.0; floats are compared to 1e-3 relative, since
other BLAS builds and transformers 4.57 round differently (on 4.57.6 a deletion AUC
differed by 2.3e-4 relative: maps equal to their last digits can order pixels otherwise). After a deliberate change of what a metric computes,
write them again with the same commands.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from captum_gmar.cli import main

EXPECTED = Path(__file__).resolve().parent / "data" / "unchanged"
#: columns that measure the machine, not the method
MACHINE = ("seconds_per_image", "peak_memory_mb")
COMMANDS = {
    "compare": [
        "compare", "--scenes", "4", "--seed", "0", "--metrics", "faithfulness,localisation,robustness,sanity",
        "--robustness-scenes", "2", "--deletion-steps", "4", "--device", "cpu", "--figure-rows", "0", "--gallery", "2",
        "--batch-size", "4", "--ig-steps", "8",
    ],
    "demo": ["demo", "--device", "cpu", "--figure-rows", "0", "--gallery", "2"],
}  # fmt: skip


def same(got: str | float, want: str | float) -> bool:
    """Equal as text, or as numbers to 1e-3 relative (1e-6 absolute); NaN equals NaN."""
    if got == want:
        return True
    try:
        a, b = float(got), float(want)
    except (TypeError, ValueError):
        return False
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_results_are_those_before_the_restructuring(command, tmp_path, request):
    if command == "compare":  # its scenes are drawn from Fashion-MNIST; demo's are bundled
        request.getfixturevalue("fashion_mnist")
    out = tmp_path / "out"
    assert main([*COMMANDS[command], "--out", str(out)]) == 0
    with (
        open(out / "results.csv", newline="", encoding="utf-8") as got_file,
        open(EXPECTED / f"{command}-results.csv", newline="", encoding="utf-8") as want_file,
    ):
        got, want = list(csv.DictReader(got_file)), list(csv.DictReader(want_file))
    assert len(got) == len(want) and list(got[0]) == list(want[0])
    for got_row, want_row in zip(got, want):
        differing = {k: (got_row[k], want_row[k]) for k in want_row if k not in MACHINE and not same(got_row[k], want_row[k])}
        assert not differing, (want_row["method"], want_row["item"], differing)
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((EXPECTED / f"{command}-summary.json").read_text())
    assert [entry["method"] for entry in summary] == [entry["method"] for entry in expected]
    for got_entry, want_entry in zip(summary, expected):
        assert set(got_entry) == set(want_entry)
        machine = {k for k in want_entry if k.startswith(MACHINE)}
        differing = {k: (got_entry[k], v) for k, v in want_entry.items() if k not in machine and not same(got_entry[k], v)}
        assert not differing, (want_entry["method"], differing)
