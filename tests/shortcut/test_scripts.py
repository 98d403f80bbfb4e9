"""The benchmark's three scripts end to end, on a few steps and images (slow: about 15 s on one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tools.shortcut import benchmark, heads, report, train


@pytest.mark.slow
def test_train_benchmark_report(tmp_path: Path, fashion_mnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("corelay")
    model, bench = tmp_path / "seed0", tmp_path / "bench" / "seed0"
    threads = torch.get_num_threads()
    with torch.random.fork_rng():  # training seeds the global RNG
        assert train.main(["--out", str(model), "--steps", "2", "--batch-size", "8", "--eval-scenes", "20"]) == 0
    assert torch.get_num_threads() == threads
    shortcut = json.loads((model / "metrics.json").read_text())["shortcut"]
    assert shortcut["n"] == 20 and 0.0 <= shortcut["others_to_class_tagged"] <= 1.0
    assert benchmark.main(["--model", str(model), "--out", str(bench), "--images", "40", "--share", "0.25"]) == 0
    results = json.loads((bench / "results.json").read_text())
    assert results["tagged"] == 10 and set(results["methods"]) == set(benchmark.METHODS)
    for r in results["methods"].values():
        assert r["first"]["rank"] == 1 and 1 <= r["best"]["rank"] <= r["n_clusters"]
        assert sum(c["size"] for c in r["clusters"]) + r["flat"] == 40
        assert sum(c["tagged"] for c in r["clusters"]) <= 10
    capsys.readouterr()
    assert report.main(["--bench", str(bench.parent), "--models", str(model), "--figure", str(tmp_path / "f.png")]) == 0
    printed = capsys.readouterr().out
    assert "| seed0 |" in printed and printed.count("| GAE |") == 4 and (tmp_path / "f.png").stat().st_size > 0
    assert heads.main(["--models", str(model), "--out", str(tmp_path / "heads.json"), "--images", "8", "--others", "20"]) == 0
    found = json.loads((tmp_path / "heads.json").read_text())["models"][0]
    assert set(found["removed_share"]) == {"ablation", "ablation (mean)", *heads.RANKINGS} and found["heads"] == [6, 4]
    assert "| ablation |" in capsys.readouterr().out
