"""The maps folder's format: shards other tools read, the index, lazy records."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors.numpy import load_file

from captum_gmar.dataset_maps.checks import FORMAT, JOB_FILE, remove_leftovers, shard_paths
from captum_gmar.dataset_maps.storage import INDEX_COLUMNS, Record, ShardWriter, load_maps, read_maps, write_index

METHODS = {"gmar-l1": "GMAR (L1)", "rollout": "Attention rollout"}


def records(items, maps_shape=(4, 4)):
    return [
        Record(
            item=i,
            image=f"a/{i}.png",
            target=i % 3,
            target_name=f"class {i % 3}",
            label=1,
            predicted=2,
            score=0.25 + i / 100,
            margin=0.1 - i / 100,
            maps={key: torch.full(maps_shape, float(i + k)) for k, key in enumerate(METHODS)},
        )
        for i in items
    ]


def folder_with(tmp_path, batches, shard_bytes=10**9, dtype=torch.float32, unreadable=()):
    job = {"format": FORMAT, "methods": METHODS, "items": 100, "dtype": str(dtype).removeprefix("torch.")}
    (tmp_path / JOB_FILE).write_text(json.dumps(job))
    writer = ShardWriter(tmp_path, 0, METHODS, dtype, shard_bytes)
    for batch in batches:
        writer.add(records(batch), unreadable)
    writer.flush()
    return tmp_path


def test_records_read_back_lazily_in_order(tmp_path, monkeypatch):
    folder = folder_with(tmp_path, [[0, 1], [2]])
    opened = []
    import captum_gmar.dataset_maps.storage as storage

    original = storage.safe_open
    monkeypatch.setattr(storage, "safe_open", lambda *a, **k: opened.append(a) or original(*a, **k))
    loaded = load_maps(folder)
    assert [(r.item, r.method) for r in loaded] == [(i, m) for i in range(3) for m in METHODS]
    headers = len(opened)
    first = loaded[1]
    assert (first.image, first.target, first.target_name, first.label, first.predicted) == ("a/0.png", 0, "class 0", 1, 2)
    assert first.score == pytest.approx(0.25)
    assert len(opened) == headers  # the fields come from the header: no map read yet
    torch.testing.assert_close(first.map, torch.full((4, 4), 1.0))
    assert len(opened) == headers + 1
    assert [r.item for r in load_maps(folder, method="rollout")] == [0, 1, 2]
    assert (loaded[-1].item, loaded[-1].method) == (2, "rollout") and len(loaded) == 6
    with pytest.raises(IndexError):
        loaded[6]


def test_read_maps_reads_the_records_maps_each_shard_once(tmp_path, monkeypatch):
    folder = folder_with(tmp_path, [[0, 1], [2, 3], [4]], shard_bytes=1)  # a shard per batch
    loaded = load_maps(folder)
    import captum_gmar.dataset_maps.storage as storage

    opened = []
    original = storage.safe_open
    monkeypatch.setattr(storage, "safe_open", lambda *a, **k: opened.append(a[0]) or original(*a, **k))
    stacked = read_maps(loaded)
    assert stacked.shape == (10, 4, 4) and stacked.dtype == torch.float32
    assert sorted(opened) == sorted({str(r.shard) for r in loaded})  # once each
    for position, record in enumerate(loaded):
        torch.testing.assert_close(stacked[position], record.map)
    some = [loaded[9], loaded[0], loaded[3]]  # any order, any method
    torch.testing.assert_close(read_maps(some), torch.stack([r.map for r in some]))
    assert read_maps([]).shape == (0, 0, 0)


def test_read_maps_refuses_maps_of_two_shapes():
    two = [SimpleNamespace(shape=(4, 4)), SimpleNamespace(shape=(2, 2))]  # refused before any shard is opened
    with pytest.raises(ValueError, match=r"the records' maps are of different shapes \(\(2, 2\), \(4, 4\)\): read each shape apart"):
        read_maps(two)


def test_a_shard_holds_at_most_shard_records(tmp_path, monkeypatch):
    import captum_gmar.dataset_maps.storage as storage

    monkeypatch.setattr(storage, "SHARD_RECORDS", 3)
    folder = folder_with(tmp_path, [[0, 1], [2, 3], [4]])  # the size bound is far away
    assert len(shard_paths(folder)) == 2 and [r.item for r in load_maps(folder, method="rollout")] == [0, 1, 2, 3, 4]
    assert [len(load_file(str(path))["item"]) for path in shard_paths(folder)] == [2, 3]  # whole batches, none past the bound
    assert load_maps(folder).images == 5


def test_shards_open_without_the_package(tmp_path):
    folder = folder_with(tmp_path, [[0, 1, 2]])
    (path,) = shard_paths(folder)
    arrays = load_file(str(path))
    assert arrays["maps.gmar-l1"].shape == (3, 4, 4)
    assert arrays["item"].tolist() == [0, 1, 2]
    assert arrays["score"].dtype.name == "float32"


def test_shards_are_cut_by_size_and_hold_whole_batches(tmp_path):
    one_batch = 2 * 2 * 16 * 4  # two records, two methods, 4 x 4 float32
    folder = folder_with(tmp_path, [[0, 1], [2, 3], [4]], shard_bytes=one_batch)
    assert [p.name for p in shard_paths(folder)] == ["rank0-000000.safetensors", "rank0-000001.safetensors", "rank0-000002.safetensors"]
    assert {r.item for r in load_maps(folder)} == {0, 1, 2, 3, 4}
    # a writer started again continues the numbering
    ShardWriter(folder, 0, METHODS, torch.float32, 1).add(records([5]))
    assert shard_paths(folder)[-1].name == "rank0-000003.safetensors"


def test_float16_storage(tmp_path):
    folder = folder_with(tmp_path, [[0, 1]], dtype=torch.float16)
    loaded = load_maps(folder)
    assert loaded[0].dtype == "float16" and loaded[0].map.dtype == torch.float32
    assert load_file(str(shard_paths(folder)[0]))["maps.rollout"].dtype.name == "float16"


def test_index_lists_every_map_and_the_unreadable(tmp_path):
    skipped = [{"item": 9, "image": "a/9.png", "error": "cannot read a/9.png: truncated"}]
    folder = folder_with(tmp_path, [[0, 1]], unreadable=skipped)
    assert write_index(folder, {1: "dog"}) == (4, 1)
    with open(folder / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(INDEX_COLUMNS)
    assert rows[1] == {
        "image": "a/0.png",
        "item": "0",
        "label": "1",
        "label_name": "dog",
        "target": "0",
        "target_name": "class 0",
        "score": "0.25",
        "margin": "0.1",
        "predicted": "2",
        "method": "rollout",
        "shape": "4x4",
        "dtype": "float32",
        "shard": "shards/rank0-000000.safetensors",
        "tensor": "maps.rollout",
        "row": "0",
    }
    assert load_file(str(folder / rows[3]["shard"]))[rows[3]["tensor"]][int(rows[3]["row"])][0, 0] == 2.0  # item 1, rollout
    assert load_maps(folder).unreadable == skipped


def test_leftovers_of_a_killed_write_are_removed_and_never_read(tmp_path):
    folder = folder_with(tmp_path, [[0]])
    leftover = folder / "shards" / ".rank0-000001.safetensors.1a2b3c4d.tmp"
    leftover.write_bytes(b"half a shard")
    assert len(load_maps(folder)) == 2
    remove_leftovers(folder)
    assert not leftover.exists() and len(shard_paths(folder)) == 1


def test_bad_folders_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no maps"):
        load_maps(tmp_path)
    folder = folder_with(tmp_path, [[0]])
    with pytest.raises(ValueError, match="no method 'gae'"):
        load_maps(folder, method="gae")
    other = folder / "shards" / "rank0-000005.safetensors"
    other.write_bytes(shard_paths(folder)[0].read_bytes().replace(FORMAT.encode(), b"captum-gmar-maps/9"))
    with pytest.raises(ValueError, match="rank0-000005.safetensors' is damaged: its format is 'captum-gmar-maps/9'"):
        load_maps(folder)
    other.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="rank0-000005.safetensors' is damaged: not a safetensors file"):
        load_maps(folder)


def test_the_docs_describe_every_index_column_in_order():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "dataset-maps.md").read_text()
    table = page[page.index("`index.csv` has one row per map") :].split("\n\n")[1]
    assert re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE) == list(INDEX_COLUMNS)


def test_a_margin_without_another_class_is_nan_and_an_empty_cell(tmp_path):
    (tmp_path / JOB_FILE).write_text(json.dumps({"format": FORMAT, "methods": METHODS, "items": 1, "dtype": "float32"}))
    writer = ShardWriter(tmp_path, 0, METHODS, torch.float32, 2**20)
    writer.add([replace(records([0])[0], margin=float("nan"))])  # one reference: no other class to beat
    writer.flush()
    assert all(math.isnan(record.margin) for record in load_maps(tmp_path))
    write_index(tmp_path, {})
    with open(tmp_path / "index.csv", newline="") as handle:
        assert [row["margin"] for row in csv.DictReader(handle)] == ["", ""]
