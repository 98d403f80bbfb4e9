"""Execute the notebooks top to bottom and report how long each took.

    python notebooks/execute.py              # check: run copies, leave the files as they are
    python notebooks/execute.py --in-place   # refresh the outputs stored in the files

Exits non-zero when a cell raises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=sorted(HERE.glob("[0-9]*.ipynb")))
    parser.add_argument("--in-place", action="store_true", help="write the outputs back into the files")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend puts the figures in the outputs
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s", flush=True)
        if args.in_place:
            nbformat.write(notebook, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
