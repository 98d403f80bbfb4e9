"""Execute the notebooks top to bottom and report how long each took.

    python notebooks/execute.py              # check: run copies, leave the files as they are
    python notebooks/execute.py --in-place   # refresh the outputs stored in the files

Exits non-zero when a cell raises, or when an output carries a warning or a path of this
machine (stored outputs are read by every user; they must show results, not our set-up).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

HERE = Path(__file__).resolve().parent
# What must not appear in an output: a Python warning, or an absolute path of this machine
# (the repository, the interpreter's prefix, the home folder).
_LEAKS = re.compile(
    "|".join(
        [r"\w*Warning\b"]
        + [re.escape(str(p)) for p in {HERE.parent, Path(sys.prefix), Path(sys.base_prefix), Path.home()} if str(p) != "/"]
    )
)


def output_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """One line per output that shows a warning or a path of this machine."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = output.get("text", "") + "".join(str(v) for k, v in data.items() if not k.startswith("image/"))
            text += "".join(output.get("traceback", []))
            found = _LEAKS.search(text)
            if found:
                problems.append(f"cell {index}: {found.group(0)!r} in {text[max(0, found.start() - 60) : found.end() + 60]!r}")
    return problems


def _convert_dinov2_first() -> None:
    """Convert the ``dinov2-small`` backbone into the user cache before the notebooks run,
    so that the one-time conversion's message (which names this machine's folders) is not
    stored in a notebook's output, as it would not be on a user's second run."""
    from captum_gmar.reference import load_reference_model

    load_reference_model("dinov2-small")


def _local_sockets(folder: str) -> Config:
    """The kernel's configuration: local sockets in ``folder`` where the system has them
    (over TCP the kernel warns, rightly, that anything on the machine could read its traffic)."""
    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(folder, "kernel")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=sorted(HERE.glob("[0-9]*.ipynb")))
    parser.add_argument("--in-place", action="store_true", help="write the outputs back into the files")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend puts the figures in the outputs
    # Progress bars (ours through tqdm, the hub's and transformers' through huggingface_hub)
    # are for live sessions, not for stored outputs.
    os.environ.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    _convert_dinov2_first()
    failed = False
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as sockets:
            NotebookClient(
                notebook,
                config=_local_sockets(sockets),
                kernel_name="python3",
                timeout=args.timeout,
                resources={"metadata": {"path": str(HERE)}},
            ).execute()
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s", flush=True)
        problems = output_problems(notebook)
        for problem in problems:
            print(f"{path.name}: {problem}", file=sys.stderr)
        failed |= bool(problems)
        if args.in_place and not problems:
            nbformat.write(notebook, path)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
