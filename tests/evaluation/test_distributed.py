"""Several processes: device and backend per rank."""

from __future__ import annotations

import pytest
import torch

from captum_gmar.evaluation import distributed
from captum_gmar.evaluation.distributed import Launch, process_group, select_backend, select_device


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
