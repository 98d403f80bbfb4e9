"""What finding a class's strategies costs, from 10,000 to 1,000,000 maps: wall time and
memory of :func:`~captum_gmar.find_strategies` (with the exact or the approximate
neighbour search, and the agreement of their clusters), and optionally of
:func:`~captum_gmar.explore` on a maps folder of that many images (and of reading the
folder back).

The maps are synthetic 14 x 14 patch maps (``tests/exploration/synthetic_maps.py``): an
object blob at a random place on each, a corner tag carrying most of the mass on 10% of
them. Each size runs in a fresh process, one after the other: the maps are made, then
the resident set's peak is reset (``/proc/self/clear_refs``) and the call runs; its
peak (``VmHWM``) less the resident set just before the call is the call's own memory.
The first-ranked cluster's recall and precision of the tagged maps are printed too.

With ``--page``, ``explore.html`` of each size is opened from the disk in headless
Chromium (selenium): the time from navigation to the first drawn view (scatter, clusters,
the first cards' frames), and to redraw it after a filter and after a sort (each the
median of 5), and the folder's size per image.

    python benchmarks/bench_explore.py --maps 10000 100000 300000 --search exact approximate --labels LABELS
    python benchmarks/bench_explore.py --maps 100000 --explore --methods 4 --page
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, which the test helper's maps come from
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "exploration"))
from synthetic_maps import planted_maps  # noqa: E402  (a test helper: the maps the tests use)


def _resident() -> tuple[int, int]:
    """The resident set and its peak since the last reset, in bytes."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def _write_folder(folder: Path, maps: np.ndarray, methods: int) -> None:
    """A maps folder of ``maps`` (every image explained for class 0), the same maps for
    each of ``methods`` methods (written as the job writes them)."""
    import torch

    from captum_gmar.dataset_maps.checks import FORMAT, JOB_FILE
    from captum_gmar.dataset_maps.storage import Record, ShardWriter, write_index

    keys = {f"m{k}": f"method {k}" for k in range(methods)}
    folder.mkdir(parents=True)
    job = {"format": FORMAT, "methods": keys, "items": len(maps), "dtype": "float32", "class_names": [f"class {k}" for k in range(10)]}
    (folder / JOB_FILE).write_text(json.dumps(job))
    writer = ShardWriter(folder, 0, keys, torch.float32, 64 * 2**20)
    tensors = torch.from_numpy(maps)
    rng = np.random.default_rng(1)
    for start in range(0, len(maps), 256):
        writer.add(
            [
                # each method's map a little different, labels and scores varied: the page's filters and sorts have work to do
                Record(
                    i,
                    f"{i:06d}.png",
                    0,
                    "class 0",
                    int(rng.integers(0, 10)),
                    int(rng.integers(0, 2)) * 3,
                    float(rng.random()),
                    float(rng.random()) - 0.5,
                    {key: tensors[i] + 0.01 * k * torch.rand_like(tensors[i]) for k, key in enumerate(keys)},
                )
                for i in range(start, min(start + 256, len(maps)))
            ]
        )
    writer.flush()
    write_index(folder, {0: "class 0"})


def child(count: int, what: str, methods: int, page: bool, search: str = "auto", labels: Path | None = None) -> dict:
    """One measurement, in this process (``labels``: a folder to keep the clusters in, as
    ``SEARCH-COUNT.npy``, for the agreement of two searches)."""
    from captum_gmar import explore, find_strategies

    maps, tagged = planted_maps(count, seed=0)
    find_strategies(maps[:200], max_clusters=3)  # imports and first calls, out of the timing
    timing: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if what == "explore":
            _write_folder(Path(tmp) / "maps", maps, methods)
            del maps
            timing.update(_reading(Path(tmp) / "maps"))
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here: the call, not the maps' making
        before = _resident()[0]
        start = time.perf_counter()
        if what == "explore":
            result = explore(Path(tmp) / "maps", Path(tmp) / "exp", progress=False)
            strategies = result.strategies["m0", 0]
        else:
            strategies = find_strategies(maps, search=search)
        seconds = time.perf_counter() - start
        peak = _resident()[1]
        if page:
            timing.update(page_timing(Path(tmp) / "exp", count))
    first = strategies.labels == strategies.ranking[0].label
    if labels is not None:
        np.save(labels / f"{search}-{count}.npy", strategies.labels)
    return {
        "search": search,
        "maps": count,  # images, with explore
        "seconds": seconds,
        "before": before,
        "peak": peak,
        "k": strategies.n_clusters,
        "edges": strategies.edges,
        "recall": float((first & tagged).sum() / tagged.sum()),
        "precision": float((first & tagged).sum() / first.sum()),
        **timing,
    }


def _reading(folder: Path) -> dict:
    """Reading every map of a maps folder back, streaming: ``load_maps`` (the records, from
    the shards' headers) then ``read_maps`` 4,096 records at a time; its time and its
    own peak memory."""
    from captum_gmar.dataset_maps import load_maps, read_maps

    Path("/proc/self/clear_refs").write_text("5")
    before = _resident()[0]
    start = time.perf_counter()
    records = load_maps(folder)
    listed = time.perf_counter() - start
    chunk: list = []
    for record in records:
        chunk.append(record)
        if len(chunk) == 4096:
            read_maps(chunk)
            chunk = []
    if chunk:
        read_maps(chunk)
    return {"read_seconds": time.perf_counter() - start, "list_seconds": listed, "read_peak": _resident()[1] - before}


def page_timing(folder: Path, images: int) -> dict:
    """``explore.html`` in headless Chromium: milliseconds to the first drawn view, to
    redraw after a filter and after a sort (medians of 5), and the page's bytes per image."""
    import shutil
    import statistics

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000", "--enable-precise-memory-info"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or ""
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    changed = """
        var select = document.querySelector(arguments[0]), start = performance.now();
        select.value = arguments[1]; select.dispatchEvent(new Event('change'));
        return performance.now() - start;"""
    try:
        driver.get((folder / "explore.html").as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        # the first view waits for the shown class's files, loaded by script elements after the page
        WebDriverWait(driver, 120, poll_frequency=0.05).until(
            lambda d: d.find_element("css selector", "main").get_attribute("data-ready-ms")
        )
        first = driver.execute_script("return Number(document.querySelector('main').getAttribute('data-ready-ms'))")
        filters = [driver.execute_script(changed, "select[id$='-label']", value) for value in ["3", "", "5", "", "7"]]
        sorts = [
            driver.execute_script(changed, "select[id$='-sort']", value) for value in ["score", "cluster", "score", "cluster", "score"]
        ]
        heap = driver.execute_script("return performance.memory.usedJSHeapSize")  # the tab's JavaScript heap, after the view
    finally:
        driver.quit()
    page = sum(path.stat().st_size for path in [folder / "explore.html", *(folder / "explore-data").iterdir()])
    return {
        "first_ms": first,
        "filter_ms": statistics.median(filters),
        "sort_ms": statistics.median(sorts),
        "page_bytes": page / images,
        "heap_bytes": heap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, nargs="+", default=[10000, 100000], help="the numbers of maps, one run each")
    parser.add_argument("--explore", action="store_true", help="time explore on a maps folder instead of find_strategies on an array")
    parser.add_argument("--methods", type=int, default=1, help="with --explore: the methods in the folder (each with the same maps)")
    parser.add_argument("--page", action="store_true", help="with --explore: time the page in headless Chromium (selenium)")
    parser.add_argument(
        "--search", nargs="+", default=["auto"], choices=["auto", "exact", "approximate"], help="find_strategies' searches, each timed"
    )
    parser.add_argument("--labels", type=Path, default=None, help="keep each run's clusters here; print the searches' agreement")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one measurement's own process
    args = parser.parse_args()
    what = "explore" if args.explore else "find_strategies"
    if args.child:
        print(json.dumps(child(args.child, what, args.methods, args.page, args.search[0], args.labels)))
        return
    import scipy
    import sklearn
    import torch

    rows = []
    if args.labels is not None:
        args.labels.mkdir(parents=True, exist_ok=True)
    for count in args.maps:
        for search in args.search:
            command = [
                sys.executable,
                __file__,
                "--child",
                str(count),
                "--methods",
                str(args.methods),
                "--search",
                search,
                *(["--labels", str(args.labels)] if args.labels is not None else []),
                *(["--explore"] if args.explore else []),
                *(["--page"] if args.page else []),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(
        f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}, SciPy {scipy.__version__}, numpy {np.__version__}; "
        f"{what}{f' ({args.methods} methods)' if args.explore else ''} on synthetic 14 x 14 maps, 10% tagged\n"
    )
    unit = "images" if args.explore else "maps"
    print(
        f"| {unit} | search | seconds | peak RSS (MiB) | its own (MiB) | KiB per {unit[:-1]} | clusters | graph entries | "
        "first cluster: recall, precision | agreement with exact (ARI) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        own = row["peak"] - row["before"]
        exact = args.labels / f"exact-{row['maps']}.npy" if args.labels is not None else None
        mine = args.labels / f"{row['search']}-{row['maps']}.npy" if args.labels is not None else None
        agreement = "–"
        if exact is not None and mine is not None and exact.exists() and row["search"] != "exact":
            from sklearn.metrics import adjusted_rand_score

            agreement = f"{adjusted_rand_score(np.load(exact), np.load(mine)):.4f}"
        print(
            f"| {row['maps']:,} | {row['search']} | {row['seconds']:.1f} | {row['peak'] / 2**20:.0f} | {own / 2**20:.0f} | {own / 1024 / row['maps']:.2f} "
            f"| {row['k']} | {row['edges']:,} | {row['recall']:.2f}, {row['precision']:.2f} | {agreement} |"
        )
    if args.explore:
        print("\nReading the maps folder back: load_maps, then read_maps 4,096 records at a time\n")
        print("| images | maps | load_maps (s) | every map read (s) | its own peak (MiB) |")
        print("|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['maps']:,} | {row['maps'] * args.methods:,} | {row['list_seconds']:.1f} | {row['read_seconds']:.1f} | {row['read_peak'] / 2**20:.0f} |"
            )
    if args.page:
        print("\nexplore.html in headless Chromium (the machine above)\n")
        print("| images | first view (ms) | filter (ms) | sort (ms) | page, KiB per image | the tab's JavaScript heap (MiB) |")
        print("|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['maps']:,} | {row['first_ms']:.0f} | {row['filter_ms']:.0f} | {row['sort_ms']:.0f} | {row['page_bytes'] / 1024:.2f} "
                f"| {row['heap_bytes'] / 2**20:.0f} |"
            )


if __name__ == "__main__":
    main()
