"""``compare`` and ``demo`` on fixed seeds give the results they gave before the package
was restructured: every metric of every row of ``results.csv`` and every entry of
``summary.json``, timings and memory aside (they depend on the machine).

The expected files in ``tests/data/unchanged/`` were written by ``python -m
tools.unchanged`` (torch 2.13.0 CPU, transformers 5.24.0). Each column may move by the
tolerance ``tolerances.json`` gives it, which ``python -m tools.unchanged --tolerances``
measured: four times the largest change that rounding-level perturbations of the weights,
another instruction set (``ATEN_CPU_CAPABILITY=default``) and one thread made to that
column (see ``tools/unchanged.py``). After a deliberate change of what a metric computes,
write both again.
"""

from __future__ import annotations

import json

import pytest

from tools.unchanged import COMMANDS, EXPECTED, TOLERANCES, differing, read_results, run


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_results_are_those_before_the_restructuring(command, tmp_path, request):
    if command == "compare":  # its scenes are drawn from Fashion-MNIST; demo's are bundled
        request.getfixturevalue("fashion_mnist")
    run(command, tmp_path / "out")
    got_rows, got_summary = read_results(tmp_path / "out", command)
    want_rows, want_summary = read_results(EXPECTED, command)
    tolerance = json.loads(TOLERANCES.read_text())[command]
    assert list(got_rows[0]) == list(want_rows[0]) and [e["method"] for e in got_summary] == [e["method"] for e in want_summary]
    assert [set(e) for e in got_summary] == [set(e) for e in want_summary]
    assert not differing(got_rows, want_rows, tolerance["results"]), differing(got_rows, want_rows, tolerance["results"])[:10]
    assert not differing(got_summary, want_summary, tolerance["summary"]), differing(got_summary, want_summary, tolerance["summary"])[:10]


def test_every_column_has_a_measured_tolerance():
    """The tolerances cover every figure the expected files hold, and were measured on
    both commands with the settings ``tools/unchanged.py`` states."""
    tolerances = json.loads(TOLERANCES.read_text())
    for command in COMMANDS:
        rows, summary = read_results(EXPECTED, command)
        figures = {key for key in rows[0] if not key.startswith(("seconds_per_image", "peak_memory_mb"))}
        assert figures <= set(tolerances[command]["results"]), figures - set(tolerances[command]["results"])
        entries = {key for entry in summary for key in entry if not key.startswith(("seconds_per_image", "peak_memory_mb"))}
        assert entries <= set(tolerances[command]["summary"]), entries - set(tolerances[command]["summary"])
        assert all(value >= 0 and value != float("inf") for value in tolerances[command]["results"].values())
