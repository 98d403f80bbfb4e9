"""Fit the memory estimate's coefficients to measured peaks of live tensors, and report how the package's estimate holds.

Reads the JSON lines of ``benchmarks/bench_memory.py --measure live`` (one or more files)
and, for every measured call, the terms of its phases as the method computes them
(:meth:`memory_phases <captum_gmar.methods.base.ViTAttribution.memory_phases>`). The fit
is the linear program: the smallest ``s`` such that, for every call of at least
``--min-mib``, the largest phase under the coefficients is at least the measured peak and
every phase at most ``s`` times it; the coefficients of
:data:`~captum_gmar.core.memory.COEFFICIENTS` (those at exactly 1.0 are counted exactly and
kept) and each method's ``maps_alive`` are the variables. Which phase peaks is decided from
the previous solution, until it no longer changes.

Then the report: per model, attention and method, the package's estimate for a CUDA device
(:meth:`estimate_bytes` with ``device="cuda"``: the fitted live tensors times
:data:`~captum_gmar.core.memory.LIVE_MARGIN`) against the measured peak.

    python benchmarks/fit_memory.py live.jsonl --min-mib 16
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

from captum_gmar.core.memory import COEFFICIENTS, Terms

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import METHODS, load_model  # noqa: E402

#: terms counted exactly, not fitted
EXACT = {"captured", "captured_maps", "maps"}


def phases_of(rows: list[dict]) -> list[tuple[Terms, ...]]:
    """The terms of every row's phases, from the method on the row's model."""
    explainers: dict[tuple[str, str, str], object] = {}
    phases = []
    for row in rows:
        key = (row["model"], row["attn"], row["method"])
        if key not in explainers:
            explainers[key] = METHODS[row["method"]](load_model(row["model"], row["attn"]))
        phases.append(explainers[key].memory_phases((row["batch"], 3, row["size"], row["size"])))  # type: ignore[attr-defined]
    return phases


def fit(
    rows: list[dict], phases: list[tuple[Terms, ...]], maps_alive: dict[str, float]
) -> tuple[dict[str, float], dict[str, float], float]:
    """The fitted coefficients, each method's ``maps_alive`` and the spread ``s`` (see the module's docstring)."""
    fitted = [term for term in COEFFICIENTS if term not in EXACT]
    methods = sorted({row["method"] for row in rows if maps_alive[row["method"]] > 0})
    names = fitted + [f"maps:{method}" for method in methods]

    def vector(terms: Terms, method: str) -> tuple[np.ndarray, float]:
        """The phase as coefficients of the variables, and its exactly counted part."""
        v = np.zeros(len(names))
        exact = 0.0
        for term, size in terms.items():
            if term == "maps" and size:
                v[names.index(f"maps:{method}")] = size / maps_alive[method]
            elif term in EXACT:
                exact += size
            else:
                v[names.index(term)] = size
        return v, exact

    vectors = [[vector(terms, row["method"]) for terms in row_phases] for row, row_phases in zip(rows, phases)]
    peaks = np.array([row["peak_bytes"] for row in rows], dtype=float)
    current = np.array([COEFFICIENTS.get(name, maps_alive.get(name.partition(":")[2], 1.0)) for name in names])
    peaking = [int(np.argmax([v @ current + exact for v, exact in row])) for row in vectors]
    while True:
        upper, upper_bound, lower, lower_bound = [], [], [], []
        for row, peak, phase in zip(vectors, peaks, peaking):
            for v, exact in row:  # every phase at most s times the peak
                upper.append(np.r_[v / peak, -1.0])
                upper_bound.append(-exact / peak)
            v, exact = row[phase]  # the peaking phase at least the peak
            lower.append(np.r_[-v / peak, 0.0])
            lower_bound.append(exact / peak - 1)
        solution = linprog(
            np.r_[np.zeros(len(names)), 1.0],
            A_ub=np.array(upper + lower),
            b_ub=np.array(upper_bound + lower_bound),
            bounds=[(0, None)] * (len(names) + 1),
            method="highs",
        )
        if not solution.success:
            raise RuntimeError(f"the fit failed: {solution.message}")
        values = solution.x[:-1]
        now = [int(np.argmax([v @ values + exact for v, exact in row])) for row in vectors]
        if now == peaking:
            break
        peaking = now
    coefficients = {name: float(value) for name, value in zip(names, values) if ":" not in name}
    maps = {name.partition(":")[2]: float(value) for name, value in zip(names, values) if ":" in name}
    return coefficients, maps, float(solution.x[-1])


def report(rows: list[dict]) -> str:
    """The package's CUDA estimate against the measured peak, per model, attention and method."""
    ratios: dict[tuple[str, str, str], list[tuple[float, dict]]] = defaultdict(list)
    explainers: dict[tuple[str, str, str], object] = {}
    for row in rows:
        key = (row["model"], row["attn"], row["method"])
        if key not in explainers:
            explainers[key] = METHODS[row["method"]](load_model(row["model"], row["attn"]))
        estimate = explainers[key].estimate_bytes((row["batch"], 3, row["size"], row["size"]), device="cuda")  # type: ignore[attr-defined]
        ratios[key].append((estimate / row["peak_bytes"], row))
    lines = [
        "| model | attention | method | calls | measured peak (MiB) | estimate / measured |",
        "|---|---|---|---:|---|---|",
    ]
    for (model, attn, method), found in sorted(ratios.items()):
        values = [ratio for ratio, _ in found]
        peaks = [row["peak_bytes"] / 2**20 for _, row in found]
        lines.append(
            f"| {model} | {attn} | {method} | {len(found)} | {min(peaks):,.0f} to {max(peaks):,.0f} | {min(values):.2f} to {max(values):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="+", help="JSON-lines files of bench_memory.py --measure live")
    parser.add_argument("--min-mib", type=float, default=16.0, help="calls below this peak are left out of the fit and the report")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for path in args.raw for line in Path(path).read_text().splitlines() if line.strip()]
    # rows written before bench_memory.py recorded the measure hold resident peaks
    rows = [row for row in rows if row.get("measure") == "live" and row["peak_bytes"] >= args.min_mib * 2**20]
    phases = phases_of(rows)
    model = load_model("vit-tiny", "sdpa")
    maps_alive = {method: float(getattr(METHODS[method](model), "maps_alive", 0.0)) for method in {row["method"] for row in rows}}
    coefficients, maps, spread = fit(rows, phases, maps_alive)
    print(f"{len(rows)} calls of at least {args.min_mib:g} MiB; the largest estimate / measured: {spread:.3f} (the smallest 1.000)")
    print("COEFFICIENTS:", ", ".join(f"{name}={value:.3f}" for name, value in coefficients.items()))
    print("maps_alive:", ", ".join(f"{method}={value:.3f}" for method, value in maps.items()))
    print()
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
