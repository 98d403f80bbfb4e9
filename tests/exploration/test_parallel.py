"""The groups clustered in parallel: on worker processes, and across the ranks of a
torchrun job (gloo, two CPU processes), the files are those of one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import planted_maps, write_folder

from captum_gmar import explore

#: the files compared: everything but the page, whose id is fresh each time
COMPARED = ("clusters.csv", "disagreement.csv", "strategies.json", "explore-data/index.js", "explore-data/maps-00000.js")


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    """Two methods' maps of three classes (80 maps each, the first with a tag)."""
    parts = [planted_maps(80, tagged_share=share, seed=seed)[0] for share, seed in ((0.1, 1), (0.0, 2), (0.0, 3))]
    both = np.concatenate(parts)
    targets = np.repeat(np.arange(3), 80)
    return write_folder(tmp_path_factory.mktemp("parallel") / "maps", {"a": both, "b": np.sqrt(both)}, targets)


def _same(one: Path, two: Path) -> None:
    for name in COMPARED:  # each names its own folder, for the page's commands
        assert (one / name).read_bytes().replace(str(one).encode(), b"OUT") == (two / name).read_bytes().replace(
            str(two).encode(), b"OUT"
        ), name


def test_worker_processes_write_the_files_of_one(maps, tmp_path):
    explore(maps, tmp_path / "one", progress=False)
    explore(maps, tmp_path / "two", workers=2, progress=False)
    _same(tmp_path / "one", tmp_path / "two")
    with pytest.raises(ValueError, match="workers must be an integer of at least 1, got 0"):
        explore(maps, tmp_path / "three", workers=0)


@pytest.mark.slow
def test_two_ranks_of_torchrun_write_the_files_of_one(maps, tmp_path):
    # the single process with one thread from its start, as torchrun starts each rank: the
    # embedding's last digit changes with the thread count on some CPUs (AMD EPYC), and a
    # limit set once the libraries are loaded does not undo it
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "captum_gmar", "explore", str(maps), "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=240,
        env=one_thread,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "captum_gmar"]
    result = subprocess.run(
        [*command, "explore", str(maps), "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=240, env=one_thread
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote clusters.csv") == 1  # rank 0 writes and reports
    _same(tmp_path / "one", tmp_path / "two")
