"""Scripts run in processes of their own, forked from a server that imported torch,
transformers and the package once: a fresh interpreter spends 6 to 8 s on those imports
(10 to 15 with the other core busy), which was most of each measurement's and each
killed job's time."""

from __future__ import annotations

import multiprocessing
from multiprocessing.process import BaseProcess
from typing import Any

FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(["torch", "transformers", "captum_gmar", "captum_gmar.reference"])


def start(script: str, **names: Any) -> BaseProcess:
    """``script`` executed in a forked process, started, with ``names`` as its globals."""
    process = FORKS.Process(target=exec, args=(script, names))
    process.start()
    return process
