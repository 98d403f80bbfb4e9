"""The expected results of ``tests/test_results_unchanged.py``, and how far each of their
figures may move on another CPU.

    python -m tools.unchanged                  # write tests/data/unchanged/{compare,demo}-{results.csv,summary.json}
    python -m tools.unchanged --tolerances     # then measure tests/data/unchanged/tolerances.json (about 10 minutes)

A float32 figure differs between CPUs (another instruction set, thread count or BLAS
build) in its last bits. Most figures carry that over as a relative error near 1e-6, but
some amplify it: an AUC whose order of pixels flips between two nearly equal map values,
a correlation between the nearly constant maps of a randomised model. So each column's
tolerance is measured rather than guessed: the commands run again (each in a process of
its own) with every weight of the model multiplied by ``1 + e``, ``e`` uniform in
``+-2**-23`` (one float32 rounding step, as another CPU's arithmetic makes), for
:data:`PERTURBED` seeds, and unperturbed under each of :data:`CPU_SETTINGS` (another
instruction set, one thread). A column's tolerance is :data:`SAFETY` times the largest
change any of those runs made to any of its values, and never below :data:`RELATIVE_FLOOR`
of a value: a column that moved by 1e-7 gets 4e-7; one that a single flipped pixel moves
by 0.02 gets 0.08 and so checks little more than the figure's range, which is all a
float32 run can promise of it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "data" / "unchanged"
TOLERANCES = EXPECTED / "tolerances.json"
#: the commands whose results are kept, on fixed seeds, every metric group in ``compare``
COMMANDS: dict[str, list[str]] = {
    "compare": [
        "compare", "--scenes", "4", "--seed", "0", "--metrics", "faithfulness,localisation,robustness,sanity",
        "--robustness-scenes", "2", "--deletion-steps", "4", "--device", "cpu", "--figure-rows", "0", "--gallery", "2",
        "--batch-size", "4", "--ig-steps", "8",
    ],
    "demo": ["demo", "--device", "cpu", "--figure-rows", "0", "--gallery", "2"],
}  # fmt: skip
#: columns (and summary entries starting so) that measure the machine, not the method
MACHINE = ("seconds_per_image", "peak_memory_mb")
#: seeds of the runs with perturbed weights
PERTURBED = 6
#: the unperturbed runs on this CPU: ``ATEN_CPU_CAPABILITY`` and the thread count
CPU_SETTINGS: tuple[dict[str, str], ...] = (
    {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
    {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "2"},
    {"OMP_NUM_THREADS": "1"},
)
#: the factor on the largest change measured: a handful of runs samples the spread, other
#: CPUs may reach somewhat further
SAFETY = 4.0
#: every value may move by this share of itself (float32 keeps about 7 digits; means over rows lose some)
RELATIVE_FLOOR = 1e-5


def read_results(folder: Path, command: str) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """A run's ``results.csv`` rows and ``summary.json`` entries (``folder``: its output
    folder, or :data:`EXPECTED` with the files named after ``command``)."""
    prefix = f"{command}-" if folder == EXPECTED else ""
    with open(folder / f"{prefix}results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((folder / f"{prefix}summary.json").read_text())


def machine(key: str) -> bool:
    return key.startswith(MACHINE)


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def changes(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per key of ``want``'s records (rows or summary entries): the largest absolute
    difference between ``got`` and ``want``, record by record (``inf`` where a text, a
    NaN or the number of records differs)."""
    if len(got) != len(want):
        return {key: math.inf for key in want[0]}
    largest: dict[str, float] = {}
    for got_record, want_record in zip(got, want):
        for key, value in want_record.items():
            a, b = _number(got_record.get(key)), _number(value)
            if a is None or b is None:
                change = 0.0 if str(got_record.get(key)) == str(value) else math.inf
            elif math.isnan(a) or math.isnan(b):
                change = 0.0 if math.isnan(a) and math.isnan(b) else math.inf
            else:
                change = abs(a - b)
            largest[key] = max(largest.get(key, 0.0), change)
    return largest


def differing(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]], tolerance: Mapping[str, float]) -> list[str]:
    """Where ``got`` moved from ``want`` by more than each key's ``tolerance`` (and
    :data:`RELATIVE_FLOOR`), as lines naming the record, the key and both values."""
    assert len(got) == len(want), f"{len(got)} records, expected {len(want)}"
    found = []
    for index, (got_record, want_record) in enumerate(zip(got, want)):
        for key, value in want_record.items():
            if machine(key):
                continue
            change = changes([got_record], [{key: value}])[key]
            b = _number(value)
            allowed = max(tolerance.get(key, 0.0), RELATIVE_FLOOR * abs(b) if b is not None and math.isfinite(b) else 0.0)
            if change > allowed:
                name = want_record.get("method", "")
                found.append(f"record {index} ({name}) {key}: {got_record.get(key)!r}, expected {value!r} within {allowed:.3g}")
    return found


@contextmanager
def _perturbed_weights(seed: int) -> Iterator[None]:
    """Every model the commands load gets each weight times ``1 + e``, ``e`` uniform in ``+-2**-23``."""
    import torch

    from captum_gmar import loading

    load = loading.load_model

    def perturbed(spec: str | None, embedding: bool = False) -> Any:
        model = load(spec, embedding)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                noise = torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1
                parameter.mul_((1 + noise * 2**-23).to(parameter.dtype))
        return model

    loading.load_model = perturbed
    try:
        yield
    finally:
        loading.load_model = load


def run(command: str, out: Path, seed: int | None = None) -> None:
    """Run ``command`` of :data:`COMMANDS` into ``out`` in this process (weights perturbed with ``seed``)."""
    from captum_gmar.cli import main

    if seed is None:
        code = main([*COMMANDS[command], "--out", str(out)])
    else:
        with _perturbed_weights(seed):
            code = main([*COMMANDS[command], "--out", str(out)])
    if code != 0:
        raise SystemExit(f"{command} exited with {code}")


def _run_apart(command: str, out: Path, seed: int | None = None, env: Mapping[str, str] | None = None) -> None:
    """:func:`run` in a new process (``ATEN_CPU_CAPABILITY`` is read when torch loads)."""
    argv = [sys.executable, "-m", "tools.unchanged", "--run", command, str(out)] + ([] if seed is None else ["--seed", str(seed)])
    subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)


def measure_tolerances(commands: Sequence[str]) -> dict[str, Any]:
    """Run every command perturbed and on every setting of :data:`CPU_SETTINGS`; per
    command, the tolerance of each results column and summary entry."""
    measured: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for command in commands:
            want_rows, want_summary = read_results(EXPECTED, command)
            rows: dict[str, float] = {}
            summary: dict[str, float] = {}
            runs = [(seed, None) for seed in range(1, PERTURBED + 1)] + [(None, env) for env in CPU_SETTINGS]
            for number, (seed, env) in enumerate(runs):
                out = Path(scratch) / f"{command}-{number}"
                _run_apart(command, out, seed, env)
                got_rows, got_summary = read_results(out, command)
                for key, change in changes(got_rows, want_rows).items():
                    rows[key] = max(rows.get(key, 0.0), change)
                for key, change in changes(got_summary, want_summary).items():
                    summary[key] = max(summary.get(key, 0.0), change)
                print(f"{command}: run {number + 1} of {len(runs)} done", flush=True)
            measured[command] = {
                "results": {key: SAFETY * change for key, change in rows.items() if not machine(key)},
                "summary": {key: SAFETY * change for key, change in summary.items() if not machine(key)},
            }
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.unchanged", description=__doc__.splitlines()[0])
    parser.add_argument("--tolerances", action="store_true", help="measure the tolerances of the expected files (and keep the files)")
    parser.add_argument("--run", nargs=2, metavar=("COMMAND", "OUT"), help=argparse.SUPPRESS)  # one run, in a process of its own
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run(args.run[0], Path(args.run[1]), args.seed)
        return 0
    if not args.tolerances:
        with tempfile.TemporaryDirectory() as scratch:
            for command in COMMANDS:
                run(command, Path(scratch) / command)
                for name in ("results.csv", "summary.json"):
                    shutil.copyfile(Path(scratch) / command / name, EXPECTED / f"{command}-{name}")
        print(f"wrote the expected files in {EXPECTED.relative_to(ROOT)}; measure their tolerances with --tolerances")
        return 0
    import platform

    import torch
    import transformers

    measured = measure_tolerances(list(COMMANDS))
    about = {
        "how": __doc__.split("\n\n")[2].replace("\n", " ") if __doc__ else "",
        "perturbed_runs": PERTURBED,
        "cpu_settings": list(CPU_SETTINGS),
        "safety": SAFETY,
        "relative_floor": RELATIVE_FLOOR,
        "measured_on": f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}",
    }
    TOLERANCES.write_text(json.dumps({"about": about, **measured}, indent=1, sort_keys=False) + "\n")
    print(f"wrote {TOLERANCES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
