"""The GPU check's quick mode runs on a CPU too: every part either writes its files or says
why it was skipped, and the summary is written as the parts finish."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_the_quick_check_runs_on_a_cpu(tmp_path):
    parts = [part for part in gpu_check.PARTS if part != "tests"]  # the suite itself is what runs this test
    status = gpu_check.main(["--out", str(tmp_path), "--quick", "--parts", ",".join(parts)])
    summary = (tmp_path / "summary.md").read_text()
    assert status == 0, summary
    assert all(f"| {part} |" in summary for part in parts) and "failed" not in summary
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["torch"] and environment["transformers"] and environment["device"]
    with (tmp_path / "methods.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row["two_threads_equal"] == "True" for row in rows)
    assert all(float(row["correlation_bfloat16"]) > 0.99 for row in rows)
    assert "skipped: no CUDA device" in summary or (tmp_path / "memory.csv").exists()
    assert (tmp_path / "bench.md").exists()
    for part, file in (("compare", "compare/summary.md"), ("dataset", "dataset.json")):
        assert f"| {part} | skipped:" in summary or (tmp_path / file).exists(), part
    if (tmp_path / "dataset.json").exists():  # the progress bar's rate, read from explain's output
        assert json.loads((tmp_path / "dataset.json").read_text())["progress_bar_images_per_second"] > 0


def test_an_unknown_part_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--out", str(tmp_path), "--parts", "methods,nope"])
    assert exit_.value.code == 2 and "unknown parts ['nope']" in capsys.readouterr().err


def test_a_part_that_fails_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    def broken(out: Path, quick: bool) -> str:
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.PARTS, "methods", broken)
    status = gpu_check.main(["--out", str(tmp_path), "--quick", "--parts", "methods,environment"])
    summary = (tmp_path / "summary.md").read_text()
    assert status == 1 and "| methods | failed: boom |" in summary and "| environment | device" in summary
    assert "RuntimeError: boom" in (tmp_path / "methods.error.txt").read_text()
