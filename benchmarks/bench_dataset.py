"""What explaining a whole data set costs beyond the methods themselves, and its memory.

On a folder of image files (Fashion-MNIST scenes exported as PNG for ``vit-tiny``, crops of
the bundled photos as JPEG for ``dinov2-small``), read with the model's image processor:

- forward+backward: the model's forward pass and one backward pass of the top logit, per
  batch, on the batches already in memory;
- each method alone: its ``attribute(batch, output="patches")`` (predicted class), summed
  over the methods, as a loop of one's own would call them;
- the methods as the job runs them (the attention methods on one shared pass), on the
  batches already in memory;
- the job: :func:`~captum_gmar.explain_dataset` from the files to the shards and the index,
  in a fresh process (after a warm-up job on one batch), with its peak resident set
  (``VmHWM``) and the resident set sampled every 0.5 s.

The job's overhead is its time over the methods' on the same batches (reading, storing and
writing). Prints a Markdown table.

    python benchmarks/bench_dataset.py --model vit-tiny --images 1000 --methods gmar-l1,rollout
    python benchmarks/bench_dataset.py --model vit-tiny --images 10000 --job-only
    python benchmarks/bench_dataset.py --model dinov2-small --images 200 --methods gmar-l1,rollout,attnlrp
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from torch.utils.data import Subset

from captum_gmar import explain_dataset
from captum_gmar.evaluation.batches import collate
from captum_gmar.evaluation.data import open_dataset
from captum_gmar.evaluation.methods import build_methods
from captum_gmar.methods.shared import attribute_together, shares_passes
from captum_gmar.reference import load_reference_model


def write_images(model: str, count: int, folder: Path) -> None:
    """``count`` image files for ``model``: Fashion-MNIST scenes (vit-tiny), photo crops (others)."""
    if model == "vit-tiny":
        from captum_gmar.imagedata.fashion_mnist import CLASS_NAMES
        from captum_gmar.imagedata.folder import export_scenes
        from captum_gmar.imagedata.scenes import make_scenes

        scenes = make_scenes(count, "train", seed=0)
        # one file per scene (the first item's class folder): count images
        export_scenes(scenes, folder / "all", CLASS_NAMES)
        files = sorted(p for p in (folder / "all").rglob("*.png") if "masks" not in p.parts)
        seen: set[str] = set()
        for path in files:
            if path.name not in seen:
                seen.add(path.name)
                path.rename(folder / path.name)
        import shutil

        shutil.rmtree(folder / "all")
        return
    from captum_gmar.imagedata.photos import load_photos

    photos = list(load_photos().values())
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(min(photo.shape[:2]) * rng.uniform(0.5, 0.9))
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        Image.fromarray(photo[top : top + side, left : left + side]).save(folder / f"{i:05d}.jpg", quality=90)


def open_folder(model_name: str, folder: Path):
    model = load_reference_model(name=model_name)
    processor = transformers.AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    return model, open_dataset(folder, processor, None, model.config.image_size)


def job(model_name: str, folder: Path, methods: list[str], batch: int, out: Path) -> dict:
    """The job in this process: its time, peak resident set and sampled resident sets."""
    model, data = open_folder(model_name, folder)
    # lazy initialisation and kernel choice out of the timing, as for the in-memory timings
    warm = Subset(data, range(min(batch, len(data))))  # one whole batch, as the in-memory timings' warm-up
    explain_dataset(model, warm, methods, out.with_name("warm-up"), batch_size=batch, progress=False, overwrite=True)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(int(Path("/proc/self/statm").read_text().split()[1]) * 4096)

    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here: the job, not the imports
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    records = explain_dataset(model, data, methods, out, batch_size=batch, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    done.set()
    peak = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    assert records is not None
    return {"seconds": seconds, "images": len(data), "maps": len(records), "peak_rss": peak, "samples": samples}


def compute(model_name: str, folder: Path, methods: list[str], batch: int, repeats: int) -> dict:
    """forward+backward, each method alone and the methods as the job runs them, on the
    job's batches in memory (best of ``repeats``)."""
    model, data = open_folder(model_name, folder)
    batches = [collate([data[i] for i in range(s, min(s + batch, len(data)))]).pixel_values for s in range(0, len(data), batch)]
    built = build_methods(model, methods)

    def forward_backward(x: torch.Tensor) -> None:
        x = x.clone().requires_grad_(True)
        model(x).logits.max(-1).values.sum().backward()

    def alone(x: torch.Tensor) -> None:
        for method in built:
            method.attribution.attribute(x, output="patches") if not method.options else method(x, model(x).logits.argmax(-1))

    def shared(x: torch.Tensor) -> None:
        together = [m.attribution for m in built if shares_passes(m.attribution)]
        results = attribute_together(together, x, output="patches") if together else []
        given = results[0].logits.argmax(-1) if results else None
        for method in built:
            if not shares_passes(method.attribution):
                method.attribution.attribute_with_logits(x, given, output="patches")

    timings = {}
    for name, run in (("forward+backward", forward_backward), ("methods alone", alone), ("methods shared", shared)):
        run(batches[0])  # warm-up: one whole batch, as the job's
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for x in batches:
                run(x)
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    return {"images": len(data), "timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit-tiny", help="reference model: vit-tiny or dinov2-small")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--methods", default="gmar-l1,rollout")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the in-memory timings (the best is kept)")
    parser.add_argument("--job-only", action="store_true", help="only the job (time and memory), e.g. for 10,000 images")
    parser.add_argument("--run-job", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)  # the job's own process
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.run_job:
        print(json.dumps(job(args.model, Path(args.run_job[0]), methods, args.batch_size, Path(args.run_job[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_images(args.model, args.images, folder)
        command = [sys.executable, __file__, "--model", args.model, "--methods", args.methods, "--batch-size", str(args.batch_size)]
        result = subprocess.run([*command, "--run-job", str(folder), str(Path(tmp) / "maps")], capture_output=True, text=True, check=True)
        ran = json.loads(result.stdout.strip().splitlines()[-1])
        measured = None if args.job_only else compute(args.model, folder, methods, args.batch_size, args.repeats)
    images = ran["images"]
    samples = ran["samples"]
    print(
        f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}; {args.model}, {images} images, batch {args.batch_size}, methods {args.methods}\n"
    )
    print("| measured | seconds | images/s |")
    print("|---|---:|---:|")
    if measured:
        for name, seconds in measured["timings"].items():
            print(f"| {name} | {seconds:.2f} | {images / seconds:.1f} |")
    print(f"| job (files to shards and index) | {ran['seconds']:.2f} | {images / ran['seconds']:.1f} |")
    if measured:
        shared, alone = measured["timings"]["methods shared"], measured["timings"]["methods alone"]
        print(
            f"\njob over the methods as it runs them: {ran['seconds'] / shared - 1:+.1%}; over each method alone: {ran['seconds'] / alone - 1:+.1%}"
        )
    quarter = len(samples) // 4
    print(
        f"job's peak resident set {ran['peak_rss'] / 2**20:.0f} MiB; resident set sampled every 0.5 s: "
        f"median of the first quarter {np.median(samples[:quarter] or samples) / 2**20:.0f} MiB, "
        f"of the last quarter {np.median(samples[-quarter:] or samples) / 2**20:.0f} MiB ({len(samples)} samples)"
    )


if __name__ == "__main__":
    main()
