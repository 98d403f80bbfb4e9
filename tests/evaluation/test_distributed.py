"""Several processes: device and backend per rank, and the comparison under torchrun with
two CPU processes (gloo) against a single process, including a failing rank."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from captum_gmar.cli import main
from captum_gmar.evaluation import distributed
from captum_gmar.evaluation.data import ImageFolderTasks
from captum_gmar.evaluation.distributed import Launch, process_group, select_backend, select_device
from captum_gmar.evaluation.report import read_csv

ID2LABEL = {0: "cat", 1: "dog", 2: "fox"}


@pytest.mark.parametrize(
    "device, launch, gpus, expected",
    [
        ("auto", Launch(), 0, "cpu"),
        ("auto", Launch(), 2, "cuda"),
        ("auto", Launch(3, 4, 1), 2, "cuda:1"),  # second process of the second node
        ("cuda", Launch(1, 2, 1), 2, "cuda:1"),
        ("cuda:1", Launch(), 2, "cuda:1"),
        ("cpu", Launch(1, 2, 1), 2, "cpu"),
        ("auto", Launch(1, 2, 1), 0, "cpu"),
    ],
)
def test_each_rank_takes_its_local_gpu_or_the_cpu(device, launch, gpus, expected):
    chosen = select_device(device, launch, gpus)
    assert chosen == torch.device(expected)
    assert select_backend(chosen) == ("nccl" if expected.startswith("cuda") else "gloo")


@pytest.mark.parametrize(
    "device, launch, gpus, message",
    [
        ("cuda", Launch(), 0, "sees no CUDA device"),
        ("cuda:0", Launch(0, 2, 0), 2, "pass --device cuda"),
        ("cuda:2", Launch(), 2, "cuda:2 does not exist"),
        ("auto", Launch(2, 3, 2), 2, "cuda:2 does not exist"),  # more processes than GPUs
        ("mps", Launch(0, 2, 0), 0, "single process"),
    ],
)
def test_impossible_devices_are_refused(device, launch, gpus, message):
    with pytest.raises(ValueError, match=message):
        select_device(device, launch, gpus)


def test_launch_from_the_environment():
    assert Launch.from_env({}) == Launch(0, 1, 0)
    assert Launch.from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Launch(5, 8, 1)
    with pytest.raises(ValueError, match="must lie in"):
        Launch.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_process_group_uses_nccl_on_the_local_gpu(monkeypatch):
    """With CUDA the group is NCCL on cuda:LOCAL_RANK (simulated: no GPU is lent here)."""
    calls = {}
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.setdefault("set_device", device))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: "backend" in calls and "destroyed" not in calls)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 3)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.update(destroyed=True))
    with process_group("auto") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.device) == (3, 4, torch.device("cuda", 1))
    assert calls["backend"] == "nccl" and calls["device_id"] == torch.device("cuda", 1)
    assert calls["set_device"] == torch.device("cuda", 1) and calls["destroyed"]


def test_a_single_process_needs_no_group():
    with process_group("cpu") as ctx:
        assert (ctx.rank, ctx.world_size) == (0, 1) and ctx.exchange(lambda: 7) == [7]
        with pytest.raises(KeyError):  # errors propagate as they are
            ctx.exchange(lambda: {}["x"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
        id2label=ID2LABEL,
    )
    path = tmp_path_factory.mktemp("model")
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Nine images of three classes and several sizes, with masks."""
    rng = np.random.default_rng(0)
    for i in range(9):
        label, (width, height) = ID2LABEL[i % 3], [(40, 32), (32, 32), (48, 36)][i // 3]
        for base, array in (
            (tmp_path / "data", rng.integers(0, 255, (height, width, 3), dtype=np.uint8)),
            (tmp_path / "data" / "masks", (rng.random((height, width)) > 0.6).astype(np.uint8)),
        ):
            (base / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(base / label / f"{i}.png")
    return tmp_path / "data"


def torchrun(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m captum_gmar ...``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "captum_gmar", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def comparable(path) -> list[dict]:
    """The rows without the timing columns (measurements, not results), NaN as a string
    (NaN is unequal to itself)."""
    return [
        {
            k: "nan" if isinstance(v, float) and math.isnan(v) else v
            for k, v in row.items()
            if k not in ("seconds_per_image", "peak_memory_mb")
        }
        for row in read_csv(path)
    ]


@pytest.mark.slow
def test_two_processes_write_the_rows_of_one(model_dir, folder, tmp_path):
    options = [
        "compare",
        "--model",
        str(model_dir),
        "--data",
        str(folder),
        "--methods",
        "gmar-l1,rollout,ig",
        "--ig-steps",
        "2",
        "--robustness-scenes",
        "5",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--figure-rows",
        "2",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1)
    try:
        assert main([*options, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    result = torchrun(*options, "--out", str(tmp_path / "two"))
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = comparable(tmp_path / "one" / "results.csv"), comparable(tmp_path / "two" / "results.csv")
    assert len(one) == len(two) == 3 * 9  # 5 batches: 3 on rank 0, 2 on rank 1
    key = lambda row: (row["method"], row["item"])  # noqa: E731
    assert sorted(one, key=key) == sorted(two, key=key)  # to the bit, with one thread per process on both sides
    assert [key(row) for row in one] == [key(row) for row in two]  # gathered in the single process's order
    summary = (tmp_path / "two" / "summary.md").read_text()
    assert "device: 2 processes: rank 0 cpu (CPU), rank 1 cpu (CPU)" in summary and "| GMAR (L1) |" in summary
    assert (tmp_path / "two" / "comparison.png").is_file()
    print(f"torchrun, 2 CPU processes: {seconds:.1f} s")


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_with_its_error(model_dir, folder, tmp_path):
    processor = transformers.ViTImageProcessor.from_pretrained(model_dir)
    broken = ImageFolderTasks(folder, processor, ID2LABEL, 32).items[2].file  # batch 1: rank 1's
    (folder / broken).write_bytes((folder / broken).read_bytes()[:120])
    out = tmp_path / "out"
    result = torchrun(
        "compare",
        "--model",
        str(model_dir),
        "--data",
        str(folder),
        "--methods",
        "rollout",
        "--metrics",
        "faithfulness",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--figure-rows",
        "0",
        "--out",
        str(out),
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.count(f"captum-gmar compare (rank 1): error: cannot read image '{broken}'") == 1, result.stderr[-3000:]
    assert sorted(row["item"] for row in read_csv(out / "results.csv")) == [0, 1]  # rank 0's batch of that step is kept


@pytest.mark.slow
def test_two_processes_explain_a_folder_into_shards_of_their_own(model_dir, folder, tmp_path):
    """``explain FOLDER`` under torchrun: each rank writes its own shards, together every
    image once, each map as a single process stores it."""
    from captum_gmar import load_maps

    options = ["explain", str(folder), "--model", str(model_dir), "--methods", "gmar-l1,attnlrp", "--batch-size", "2", "--device", "cpu"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*options, "--out", str(tmp_path / "one"), "--gallery", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = torchrun(*options, "--out", str(tmp_path / "two"), "--gallery", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    shards = sorted(path.name for path in (tmp_path / "two" / "shards").iterdir())
    assert {name.split("-")[0] for name in shards} == {"rank0", "rank1"}
    one = {(r.item, r.method): r for r in load_maps(tmp_path / "one")}
    two = load_maps(tmp_path / "two")
    assert sorted((r.item, r.method) for r in two) == sorted(one)
    for record in two:
        torch.testing.assert_close(record.map, one[(record.item, record.method)].map, rtol=0, atol=0)
        assert record.target == one[(record.item, record.method)].target
    assert (tmp_path / "two" / "report.html").is_file() and "wrote 18 maps of 9 images" in result.stdout
