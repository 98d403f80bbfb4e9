"""A comparison over several processes, as ``torchrun`` or ``accelerate launch`` start them.

A launcher starts one process per device and tells each its place in environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
Here that becomes:

- **device**: ``cuda:LOCAL_RANK`` when CUDA is available (``--device auto`` or ``cuda``),
  else the CPU; the process group's backend is NCCL for CUDA devices, gloo for the CPU.
- **work**: the job's batches (fixed by the data set's order and the batch size) dealt
  round robin, rank ``r`` taking batches ``r, r + W, r + 2W, ...``. Every item is
  explained in the same batch as in a single-process run, so its rows are the same,
  the seeded noise of the robustness metrics included; only the timings differ.
- **results**: after each step (one batch per rank) every rank's rows are gathered
  (:meth:`Context.exchange`); rank 0 writes them, in the order of a single-process run.
- **failure**: a rank whose batch raises sends its error instead of rows; rank 0 writes
  the rows the other ranks finished at that step, and every rank raises
  :class:`~captum_gmar.errors.RankFailedError`, so a failing rank ends the run with its
  error rather than leaving the others waiting (the failing rank reports it). A rank that
  dies outright (killed, out of memory) is noticed by the launcher, which stops the
  others (torchrun does), or else by the process group's timeout.

Nothing is exchanged but result rows (Python objects); the model runs on each rank alone.
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import RankFailedError

__all__ = ["Context", "Launch", "current_context", "describe_device", "process_group", "select_backend", "select_device"]

T = TypeVar("T")

#: how long a rank waits for the others at a step before the run fails
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Launch:
    """This process's place in the job, as the launcher's environment variables say."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Launch:
        """From ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a single process without them."""
        try:
            launch = cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        except ValueError:
            raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun or accelerate launch)") from None
        if not (0 <= launch.rank < launch.world_size and launch.local_rank >= 0):
            raise ValueError(f"RANK {launch.rank} must lie in 0..WORLD_SIZE-1 ({launch.world_size - 1})")
        return launch


def select_device(device: str, launch: Launch, cuda_devices: int) -> torch.device:
    """The device of this process for ``--device``.

    Args:
        device: ``"auto"`` (CUDA when there is a GPU, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` (a single process only) or ``"mps"`` (a single process only).
        launch: this process's place; with several processes a CUDA device is
            ``cuda:LOCAL_RANK``.
        cuda_devices: how many CUDA devices this process sees.

    Raises:
        ValueError: a device that is not there, or one index for several processes.
    """
    several = launch.world_size > 1
    if device == "auto":
        device = "cuda" if cuda_devices else "cpu"
    if device.startswith("cuda"):
        if not cuda_devices:
            raise ValueError(f"--device {device} was asked for but torch sees no CUDA device; use --device cpu or auto")
        if several and device != "cuda":
            raise ValueError(f"--device {device}: with several processes each uses cuda:LOCAL_RANK; pass --device cuda (or auto)")
        index = launch.local_rank if several else (int(device.split(":")[1]) if ":" in device else None)
        if index is not None and index >= cuda_devices:
            raise ValueError(f"cuda:{index} does not exist: this process sees {cuda_devices} CUDA device(s)")
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if device == "mps" and several:
        raise ValueError("--device mps runs a single process; the distributed backends are NCCL (CUDA) and gloo (CPU)")
    return torch.device(device)


def select_backend(device: torch.device) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def describe_device(device: torch.device) -> str:
    """``'cuda:0 (NVIDIA H100 80GB HBM3)'`` or ``'cpu (CPU)'``."""
    return f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})"


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    device: torch.device

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order (a picklable object)."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def exchange(self, work: Callable[[], T]) -> list[T]:
        """Run ``work`` on every rank and return all the results, in rank order.

        With one process an exception propagates as it is. With several, a rank whose
        ``work`` raises sends the exception instead, and every rank raises
        :class:`~captum_gmar.errors.RankFailedError` for the lowest failing rank, with
        the other ranks' results.
        """
        if self.world_size == 1:
            return [work()]
        try:
            payload: tuple[bool, Any] = (True, work())
        except Exception as error:  # noqa: BLE001 -- every error is sent to the other ranks
            payload = (False, _Failure.of(self.rank, error))
        gathered = self.all_gather(payload)
        failures = [value for ok, value in gathered if not ok]
        if failures:
            completed = [value for ok, value in gathered if ok]
            raise RankFailedError(failures[0].rank, failures[0].error, failures[0].traceback, completed)
        return [value for _, value in gathered]

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.world_size > 1:
            dist.barrier()


@dataclass(frozen=True)
class _Failure:
    rank: int
    error: BaseException
    traceback: str

    @classmethod
    def of(cls, rank: int, error: Exception) -> _Failure:
        text = "".join(traceback.format_exception(error))
        try:  # sent as is where it pickles, so that its type survives
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 -- any unpicklable error
            error = RuntimeError(f"{type(error).__name__}: {error}")
        return cls(rank, error, text)


def current_context(device: str) -> Context:
    """The context for a comparison: the initialised process group's rank and size (a
    single process when there is none) and this process's device (:func:`select_device`).

    Raises:
        ValueError: when a launcher started several processes but the process group is
            not initialised (use :func:`process_group`).
    """
    launch = Launch.from_env()
    if dist.is_available() and dist.is_initialized():
        launch = Launch(dist.get_rank(), dist.get_world_size(), launch.local_rank)
    elif launch.world_size > 1:
        raise ValueError(
            f"this is rank {launch.rank} of {launch.world_size} processes but torch.distributed is not initialised: "
            "run the comparison inside `with captum_gmar.evaluation.distributed.process_group(device):`"
        )
    return Context(launch.rank, launch.world_size, select_device(device, launch, torch.cuda.device_count()))


@contextmanager
def process_group(device: str = "auto", timeout: timedelta = TIMEOUT) -> Iterator[Context]:
    """Initialise the process group when a launcher started several processes (NCCL on
    CUDA devices, gloo on the CPU), and tear it down on exit; a single process needs none.

    Yields:
        This process's :class:`Context`.
    """
    launch = Launch.from_env()
    if launch.world_size == 1 or dist.is_initialized():
        yield current_context(device)
        return
    target = select_device(device, launch, torch.cuda.device_count())
    if target.type == "cuda":
        torch.cuda.set_device(target)  # the objects gathered travel through this GPU
    dist.init_process_group(select_backend(target), timeout=timeout, device_id=target if target.type == "cuda" else None)
    try:
        yield current_context(device)
    finally:
        dist.destroy_process_group()
