"""A damaged maps folder (shards cut short, edited or copied by hand; ``maps.json`` broken
or gone) is refused in one line naming the file and what is wrong, never read in silence;
a resumed job sets a damaged shard aside, keeps it, and explains its images again."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest
import torch
from maps_helpers import CLASSES, write_images
from safetensors import safe_open
from safetensors.torch import save

from captum_gmar import explain_dataset, load_maps
from captum_gmar.evaluation.data import open_dataset

METHODS = ["gmar-l1", "rollout"]


def job(model, processor, images, out, **options):
    data = open_dataset(images, processor, CLASSES, 32)
    return explain_dataset(model, data, METHODS, out, batch_size=4, shard_mb=1e-4, progress=False, **options)


@pytest.fixture(scope="module")
def made(model, processor, tmp_path_factory):
    """Ten images explained into three shards (4, 4 and 2 images), and their maps."""
    root = tmp_path_factory.mktemp("made")
    write_images(root / "images", 10)
    records = job(model, processor, root / "images", root / "maps")
    return root, {(r.item, r.method): r.map for r in records}


@pytest.fixture
def maps(made, tmp_path):
    shutil.copytree(made[0] / "maps", tmp_path / "maps", symlinks=True)
    return tmp_path / "maps"


def shard(folder, rank=0, number=0):
    return folder / "shards" / f"rank{rank}-{number:06d}.safetensors"


def rewrite(path, change):
    """The shard at ``path`` saved again after ``change(tensors, metadata)``."""
    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = dict(handle.metadata()), {name: handle.get_tensor(name) for name in handle.keys()}
    change(tensors, metadata)
    path.write_bytes(save(tensors, metadata))


def out_of_range(tensors, metadata):
    tensors["item"] = tensors["item"] + 100
    if "contents" in metadata:
        metadata["contents"] = json.dumps({int(item) + 100: text for item, text in json.loads(metadata["contents"]).items()})


DAMAGES = {
    "no images in the header": (lambda t, m: m.pop("images"), "its header has no 'images'"),
    "item shorter than the header": (lambda t, m: t.update(item=t["item"][:-1]), "'item' is (3,), but the header lists 4 images"),
    "map rows short": (
        lambda t, m: t.update({"maps.rollout": t["maps.rollout"][:-1]}),
        "'maps.rollout' is (3, 4, 4), but the header lists 4",
    ),
    "a map stored as int32": (lambda t, m: t.update({"maps.rollout": t["maps.rollout"].int()}), "'maps.rollout' is I32, not F32 or F16"),
    "fewer images in the header": (
        lambda t, m: m.update(images=json.dumps(json.loads(m["images"])[:-1])),
        "'item' is (4,), but the header lists 3 images",
    ),
    "items beyond the data set": (out_of_range, "it holds image 104, beyond the job's 10 images"),
}


@pytest.mark.parametrize("damage", list(DAMAGES) + ["cut short", "copied under another rank's name", "a link to a folder"])
def test_a_damaged_shard_is_refused_naming_it_and_resume_sets_it_aside(made, maps, model, processor, damage, capsys):
    damaged = shard(maps, 0, 1)
    if damage == "cut short":
        damaged.write_bytes(damaged.read_bytes()[:-100])
        reason = r"cut short \(\d+ of its \d+ bytes\)"
    elif damage == "copied under another rank's name":
        damaged = shard(maps, 1, 0)
        shutil.copyfile(shard(maps, 0, 1), damaged)
        reason = re.escape("it holds image 4, which rank0-000001.safetensors holds too")
    elif damage == "a link to a folder":
        damaged = shard(maps, 0, 7)
        (maps / "elsewhere").mkdir()
        damaged.symlink_to(maps / "elsewhere")
        reason = "it is a symbolic link"
    else:
        change, reason = DAMAGES[damage]
        rewrite(damaged, change)
        reason = re.escape(reason)
    with pytest.raises(ValueError) as refused:
        load_maps(maps)
    message = str(refused.value)
    assert re.search(rf"shard '{re.escape(str(damaged))}' is damaged: {reason}", message) and "\n" not in message, message

    records = job(model, processor, made[0] / "images", maps, resume=True)
    assert f"set aside {str(damaged)!r}" in capsys.readouterr().err
    assert (maps / "shards" / "damaged" / damaged.name).is_symlink() or (maps / "shards" / "damaged" / damaged.name).is_file()
    assert Counter((r.item, r.method) for r in records) == {key: 1 for key in made[1]}
    for record in records:
        torch.testing.assert_close(record.map, made[1][(record.item, record.method)])
    assert len(load_maps(maps)) == len(made[1])


@pytest.mark.parametrize("content, reason", [("[]", "is not the description of a maps job"), ("{not json", "is not JSON")])
def test_a_damaged_maps_json_is_named(made, maps, model, processor, content, reason):
    (maps / "maps.json").write_text(content)
    for attempt in (lambda: load_maps(maps), lambda: job(model, processor, made[0] / "images", maps, resume=True)):
        with pytest.raises(ValueError, match=re.escape(f"{str(maps / 'maps.json')!r} {reason}")):
            attempt()
    assert len(list((maps / "shards").glob("*.safetensors"))) == 3


def test_shards_without_maps_json_are_never_deleted_unasked(made, maps, model, processor):
    (maps / "maps.json").unlink()
    for options in ({}, {"resume": True}):
        with pytest.raises(ValueError, match="holds shards but no maps.json.*--overwrite"):
            job(model, processor, made[0] / "images", maps, **options)
        assert len(list((maps / "shards").glob("*.safetensors"))) == 3
    assert len(job(model, processor, made[0] / "images", maps, overwrite=True)) == len(made[1])
