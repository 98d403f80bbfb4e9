"""Everything to measure on a CUDA machine, with one command, into one folder.

    python benchmarks/gpu_check.py --out gpu-check            # within 8 minutes on one GPU
    python benchmarks/gpu_check.py --out gpu-check --quick    # a minute; runs on a CPU too (its test does)

Run it from the repository's root (it imports ``tests/tiny_models.py`` and calls the other
benchmarks). It installs nothing: each part needs only the package, and a part whose
requirement is missing (pytest, scikit-learn, Fashion-MNIST, a GPU) is skipped and named
in ``summary.md`` with the reason. Each part writes its files as it finishes, so a run
stopped half-way leaves what it measured. The parts:

- ``environment.json``: the device, its driver, the library versions;
- ``methods.csv``: every method on every tiny model family (and the bundled vit-tiny),
  on the device against the CPU, in bfloat16 and float16 against float32, and two threads
  on one model against the serial maps;
- ``memory.csv``: each method's memory estimate against the CUDA allocator's peak, ViT-B/16
  at batch 1 and 16 (sdpa and eager), and families outside the estimate's fit (BEiT,
  DeiT, CLIP; ``benchmarks/memory_families.py``) at batch 16;
- ``bench.md``: ``benchmarks/bench_attribution.py`` on vit-tiny, ViT-B/16 and ViT-L/16;
- ``compare/``: ``captum-gmar compare`` on 1,000 scenes, IG included;
- ``dataset.json``: ``captum-gmar explain`` on a folder of 5,000 scenes with ``--workers``,
  its images per second against GMAR's own at batch 32, and its time before the first map;
- ``tests.txt``: the test suite.

The scenes need Fashion-MNIST's test split: ``apt-get install dataset-fashion-mnist``, or
``CAPTUM_GMAR_FASHION_MNIST=DIR`` naming a folder that holds ``t10k-images-idx3-ubyte.gz``
and ``t10k-labels-idx1-ubyte.gz`` (and the train files for ``--data``-less runs).
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
import transformers  # noqa: E402

#: the command line, run by this Python (whichever ``captum-gmar`` is on the PATH)
CLI = [sys.executable, "-c", "import sys; from captum_gmar.cli import main; sys.exit(main())"]
METHODS = ("gmar-l1", "gmar-l2", "gmar-gate-positive", "rollout", "raw-attention", "gae", "gradcam", "attnlrp", "cplrp")


class Skip(Exception):
    """A part that cannot run here, and why."""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment(out: Path, quick: bool) -> str:
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("captum", "torchvision", "numpy", "sklearn", "pytest"):
        spec = importlib.util.find_spec(name)
        info[name] = getattr(__import__(name), "__version__", "?") if spec else None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    (out / "environment.json").write_text(json.dumps(info, indent=1))
    return ", ".join(f"{key} {value}" for key, value in info.items())


def _tiny(name: str) -> torch.nn.Module:
    from tiny_models import TINY_MODELS, randomise_

    torch.manual_seed(0)
    return randomise_(getattr(transformers, name)(TINY_MODELS[name]())).eval()


def _maps(model: torch.nn.Module, key: str, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum_gmar.evaluation.methods import build_methods

    (method,) = build_methods(model, [key])
    return method.attribution.attribute(x, target=target, output="patches").float().cpu()


def methods(out: Path, quick: bool) -> str:
    from tiny_models import IMAGE_SIZE, TINY_MODELS

    from captum_gmar.reference import load_reference_model

    dev = device()
    names = [n for n in TINY_MODELS if n != "TimmWrapperForImageClassification"][: 2 if quick else None]
    keys = METHODS[:3] if quick else METHODS
    rows = []
    for name in [*names, "vit-tiny"]:
        model = load_reference_model() if name == "vit-tiny" else _tiny(name)
        size = model.config.image_size if name == "vit-tiny" else IMAGE_SIZE
        x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
        target = torch.arange(4) % model.config.num_labels
        for key in keys:
            cpu = _maps(model, key, x, target)
            on_device = _maps(model.to(dev), key, x.to(dev), target.to(dev))
            row = {
                "model": name,
                "method": key,
                "device": str(dev),
                "max_difference": float((on_device - cpu).abs().max() / cpu.abs().max()),
            }
            for dtype in (torch.bfloat16, torch.float16) if dev.type == "cuda" else (torch.bfloat16,):
                half = _maps(copy.deepcopy(model).to(dtype), key, x.to(dev, dtype), target.to(dev))
                row[f"correlation_{str(dtype)[6:]}"] = float(torch.corrcoef(torch.stack([half.flatten(), cpu.flatten()]))[0, 1])
            with ThreadPoolExecutor(2) as pool:  # two threads on one model, at once
                threaded = list(pool.map(partial(_maps, model, key, x.to(dev)), [target.to(dev)] * 2))
            row["two_threads_equal"] = all(torch.equal(t, on_device) for t in threaded) and len(threaded) == 2
            rows.append(row)
            model.cpu()
    _write_csv(out / "methods.csv", rows)
    worst = max(rows, key=lambda r: r["max_difference"])
    return f"{len(rows)} method-and-model cases; largest difference {worst['max_difference']:.2g} of the map's largest value ({worst['model']}, {worst['method']})"


def memory(out: Path, quick: bool) -> str:
    if not torch.cuda.is_available():
        raise Skip("no CUDA device: the estimate is checked against the CUDA allocator's peak")
    from captum_gmar.evaluation.methods import build_methods

    sys.path.insert(0, str(Path(__file__).parent))
    from memory_families import families

    keys = ("gmar-l1", "gmar-attention", "rollout", "raw-attention", "gae", "gradcam", "attnlrp", "cplrp")
    sizes = {"num_labels": 1000} if not quick else {"num_hidden_layers": 2, "num_labels": 10}
    models = {"ViT-B/16": lambda attn: transformers.ViTForImageClassification(transformers.ViTConfig(**sizes, attn_implementation=attn))}
    if not quick:
        models.update(families())
    rows = []
    for name, make in models.items():
        for attn in ("sdpa", "eager"):
            torch.manual_seed(0)
            model = make(attn).eval().cuda()
            for key in keys:
                (method,) = build_methods(model, [key])
                for batch in (1, 16) if name == "ViT-B/16" else (16,):
                    x = torch.randn(batch, 3, 224, 224, device="cuda")
                    method.attribution.attribute(x[:1], target=0)  # warm-up: lazily built kernels and workspaces
                    estimate = method.attribution.estimate_bytes(x.shape)
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                    method.attribution.attribute(x, target=0)
                    torch.cuda.synchronize()
                    peak = torch.cuda.max_memory_allocated() - before
                    row = {
                        "model": name,
                        "attention": attn,
                        "method": key,
                        "batch": batch,
                        "estimate_mib": estimate / 2**20,
                        "peak_mib": peak / 2**20,
                    }
                    rows.append(row)
            del model
            torch.cuda.empty_cache()
    _write_csv(out / "memory.csv", rows)
    ratios = {r["model"]: [] for r in rows}
    for r in rows:
        ratios[r["model"]].append(r["estimate_mib"] / max(r["peak_mib"], 1e-9))
    return "estimate over peak: " + "; ".join(f"{model} {min(v):.2f} to {max(v):.2f}" for model, v in ratios.items())


def bench(out: Path, quick: bool) -> str:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    args = [
        "--models",
        "reference,vit-b16,vit-l16",
        "--batch-sizes",
        "1,8,32",
        "--methods",
        "forward,forward+backward,gmar,rollout,gae,attnlrp,ig",
    ]
    if quick:
        args = [
            "--models",
            "reference",
            "--batch-sizes",
            "1",
            "--methods",
            "forward,forward+backward,gmar",
            "--repeats",
            "1",
            "--attn",
            "sdpa",
        ]
    _run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_attribution.py"), *args, "--device", dev, "--out", str(out / "bench.md")],
        out / "bench.log",
    )
    return "bench.md"


def compare(out: Path, quick: bool) -> str:
    _need_fashion_mnist()
    scenes, methods = ("8", "gmar-l1,rollout") if quick else ("1000", "gmar-l1,gmar-gate-positive,rollout,gae,attnlrp,ig")
    start = time.perf_counter()
    command = ["compare", "--scenes", scenes, "--methods", methods, "--device", "auto", "--out", str(out / "compare")]
    _run([*CLI, *command], out / "compare.log")
    return f"{scenes} scenes in {time.perf_counter() - start:.0f} s: compare/summary.md"


def dataset(out: Path, quick: bool) -> str:
    _need_fashion_mnist()
    images, workers = (64, 0) if quick else (5000, 8)
    folder = out / "dataset-scenes"
    _run([*CLI, "export-scenes", str(folder), "--n", str(images), "--items", "1"], out / "dataset.log")
    maps = out / "dataset-maps"
    start = time.perf_counter()
    job = subprocess.Popen(
        [*CLI, "explain", str(folder), "--methods", "gmar-l1", "--out", str(maps), "--gallery", "0"]
        + ["--workers", str(workers), "--device", "auto"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = None
    while job.poll() is None:  # the first shard on disk: the time before the first maps
        if first is None and any((maps / "shards").glob("*.safetensors")):
            first = time.perf_counter() - start
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    printed = job.stdout.read() if job.stdout else ""
    (out / "dataset.log").write_text((out / "dataset.log").read_text() + printed)
    if job.returncode:
        raise RuntimeError(f"explain exited {job.returncode}: see dataset.log")
    own = _method_throughput()
    rates = re.findall(r"([\d.]+)image/s", printed)  # the progress bar's rate, the start of Python left out
    bar = float(rates[-1]) if rates else float("nan")
    result = {"images": images, "workers": workers, "seconds": seconds, "images_per_second": images / seconds}
    result.update(progress_bar_images_per_second=bar, first_shard_seconds=first, method_images_per_second=own)
    (out / "dataset.json").write_text(json.dumps(result, indent=1))
    return (
        f"{bar:.0f} images/s in the progress bar with {workers} workers, {bar / own:.0%} of GMAR's own at batch 32; "
        f"{images / seconds:.0f} images/s in all, the first shard after {first or seconds:.1f} s"
    )


def tests(out: Path, quick: bool) -> str:
    if importlib.util.find_spec("pytest") is None:
        raise Skip("pytest is not installed (pip install pytest, or the test extra)")
    selection = ["tests/core"] if quick else []
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection], out / "tests.txt", check=False)
    return result.splitlines()[-1] if result else "no output"


PARTS: dict[str, Callable[[Path, bool], str]] = {
    "environment": environment,
    "methods": methods,
    "memory": memory,
    "bench": bench,
    "compare": compare,
    "dataset": dataset,
    "tests": tests,
}


def _method_throughput() -> float:
    """GMAR's images per second on vit-tiny at batch 32, on the device (median of 5)."""
    from captum_gmar import GMARAttribution
    from captum_gmar.reference import load_reference_model

    dev = device()
    gmar = GMARAttribution(load_reference_model().to(dev))
    x = torch.randn(32, 3, 64, 64, device=dev)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        gmar.attribute(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 32 / sorted(times[1:])[2]


def _need_fashion_mnist() -> None:
    from captum_gmar.imagedata.fashion_mnist import resolve_data_dir

    try:
        resolve_data_dir()
    except FileNotFoundError as error:
        raise Skip(str(error)) from None
    if importlib.util.find_spec("sklearn") is None:
        raise Skip("scikit-learn is not installed (the photos extra): compare's metrics and scenes need it")


def _run(command: list[str], log: Path, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    log.write_text(result.stdout + result.stderr)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(command[1:4])} ... exited {result.returncode}: see {log.name}")
    return result.stdout.strip()


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder of tables and logs (created)")
    parser.add_argument("--quick", action="store_true", help="small sizes and few methods, for a minute's check (and on a CPU)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",")]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose among {list(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# GPU check ({'quick' if args.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| part | result | seconds |",
        "|---|---|---|",
    ]
    failed = False
    for name in parts:
        start = time.perf_counter()
        try:
            result = PARTS[name](args.out, args.quick)
        except Skip as why:
            result = f"skipped: {why}"
        except Exception as error:  # noqa: BLE001 (a failed part is recorded; the others still run)
            failed = True
            result = f"failed: {error}"
            (args.out / f"{name}.error.txt").write_text(traceback.format_exc())
        lines.append(f"| {name} | {result.replace('|', '/')} | {time.perf_counter() - start:.0f} |")
        (args.out / "summary.md").write_text("\n".join(lines) + "\n")  # after each part: a stopped run keeps its results
        print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
