"""``explain_dataset``: every stored map equals the method's own, every image once, a job
resumed after SIGKILL at any point loses and doubles nothing, bad input is refused first."""

from __future__ import annotations

import csv
import errno
import json
import os
import time
from collections import Counter
from multiprocessing.process import BaseProcess

import forks
import numpy as np
import pytest
import torch
from maps_helpers import CLASSES, write_images
from PIL import Image
from safetensors import safe_open

from captum_gmar import AttentionRollout, AttnLRP, GMARAttribution, explain_dataset, load_maps
from captum_gmar.dataset_maps.checks import shard_paths
from captum_gmar.errors import DiskFullError
from captum_gmar.evaluation.data import open_dataset
from captum_gmar.vit.similarity import SimilarityModel


def dataset(folder, processor, labelled=True, **options):
    return open_dataset(folder, processor, CLASSES if labelled else None, 32, **options)


def stored(records, method):
    return {(r.item, r.target): r for r in records if r.method == method}


@pytest.mark.parametrize("resolution, output", [("patches", "patches"), ("pixels", "input")])
def test_stored_maps_equal_the_methods_own(model, processor, images, tmp_path, resolution, output):
    data = dataset(images, processor)
    records = explain_dataset(
        model, data, ["gmar-l1", "rollout", "attnlrp", "saliency"], tmp_path / "maps", resolution=resolution, batch_size=4, progress=False
    )
    assert len(records) == 4 * len(data)
    x = torch.stack([data[i]["pixel_values"] for i in range(len(data))])
    with torch.no_grad():
        logits = model(x).logits
    predicted = logits.argmax(-1)
    gmar = GMARAttribution(model).attribute(x, target=predicted, output=output)
    rollout = AttentionRollout(model).attribute(x, output=output)
    lrp = AttnLRP(model).attribute(x, target=predicted, output=output)
    lrp = lrp.clamp(min=0) if output == "patches" else lrp.sum(1).clamp(min=0)
    for key, expected in (("gmar-l1", gmar), ("rollout", rollout), ("attnlrp", lrp)):
        expected = expected if expected.dim() == 3 else expected[:, 0]
        for i in range(len(data)):
            record = stored(records, key)[(i, int(predicted[i]))]
            torch.testing.assert_close(record.map, expected[i], rtol=1e-4, atol=1e-6)
    saliency = stored(records, "saliency")[(0, int(predicted[0]))]
    assert saliency.shape == ((4, 4) if resolution == "patches" else (32, 32)) and saliency.map.sum() > 0
    first = stored(records, "gmar-l1")[(3, int(predicted[3]))]
    assert first.image == data.items[3].file and first.label == data[3]["label"]
    assert first.score == pytest.approx(float(torch.softmax(logits[3], -1)[predicted[3]]), rel=1e-5)
    top_two = torch.softmax(logits[3], -1).topk(2).values  # explained: the predicted class, so the margin is over the second
    assert first.margin == pytest.approx(float(top_two[0] - top_two[1]), rel=1e-4)


def test_targets_label_class_and_every_reference(model, processor, images, tmp_path):
    data = dataset(images, processor)
    by_label = explain_dataset(model, data, ["gmar-l1"], tmp_path / "label", target="label", progress=False)
    assert [r.target for r in by_label] == [data[i]["label"] for i in range(len(data))]
    by_name = explain_dataset(model, data, ["gmar-l1"], tmp_path / "fox", target="fox", progress=False)
    assert {(r.target, r.target_name) for r in by_name} == {(2, "fox")}
    references = torch.randn(3, 32)
    similarity = SimilarityModel(model.base_model, references)
    every = explain_dataset(
        similarity, data, ["gmar-l1", "gae"], tmp_path / "refs", target="all", class_names=["r0", "r1", "r2"], progress=False
    )
    assert Counter((r.item, r.method) for r in every) == {(i, m): 3 for i in range(len(data)) for m in ("gmar-l1", "gae")}
    gae = stored(every, "gae")
    x = data[4]["pixel_values"][None]
    for k in range(3):
        expected = AttentionRollout  # noqa: F841 (GAE's own call below)
        from captum_gmar import GenericAttentionExplainability

        own = GenericAttentionExplainability(similarity).attribute(x, target=k, output="patches")[0]
        torch.testing.assert_close(gae[(4, k)].map, own, rtol=1e-4, atol=1e-7)
        assert gae[(4, k)].target_name == f"r{k}"


def test_unlabelled_folder_and_unreadable_images(model, processor, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    data = dataset(folder, processor, labelled=False, skip_unreadable=True)
    records = explain_dataset(model, data, ["rollout"], tmp_path / "maps", progress=False)
    assert sorted(r.image for r in records) == ["0.jpg", "1.jpg", "2.jpg"] and {r.label for r in records} == {-1}
    assert [entry["image"] for entry in records.unreadable] == ["broken.png"]
    assert "broken.png" in (tmp_path / "maps" / "unreadable.csv").read_text()
    with pytest.raises(ValueError, match="the data has none"):
        explain_dataset(model, data, ["rollout"], tmp_path / "other", target="label", progress=False)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"target": 7}, "not a class of the model"),
        ({"target": "zebra"}, "not a class of the model"),
        ({"target": "all"}, None),  # five classes: allowed
        ({"resolution": "voxels"}, "resolution must be"),
        ({"dtype": "int8"}, "dtype must be"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"resume": True, "overwrite": True}, "choose one"),
        ({"methods": ["gmar-l3"]}, "unknown method"),
    ],
)
def test_bad_settings_are_refused_before_any_work(model, processor, images, tmp_path, options, message):
    data = dataset(images, processor)
    options = {"methods": ["rollout"], **options}
    if message is None:
        assert len(explain_dataset(model, data, out=tmp_path / "ok", progress=False, **options)) == 5 * len(data)
        return
    with pytest.raises(ValueError, match=message):
        explain_dataset(model, data, out=tmp_path / "maps", progress=False, **options)
    assert not (tmp_path / "maps" / "shards").exists() or not shard_paths(tmp_path / "maps")


def test_many_classes_are_not_all_explained(processor, images, tmp_path):
    import transformers
    from tiny_models import COMMON

    big = transformers.ViTForImageClassification(transformers.ViTConfig(**{**COMMON, "num_labels": 100})).eval()
    with pytest.raises(ValueError, match="each of the model's 100 classes"):
        explain_dataset(big, dataset(images, processor, labelled=False), ["rollout"], tmp_path / "maps", target="all", progress=False)


def test_an_output_of_another_job_is_kept_unless_told(model, processor, images, tmp_path):
    data = dataset(images, processor)
    out = tmp_path / "maps"
    explain_dataset(model, data, ["rollout"], out, progress=False)
    with pytest.raises(ValueError, match="add --resume .* to continue it, or --overwrite .* to start over"):
        explain_dataset(model, data, ["rollout"], out, progress=False)
    with pytest.raises(ValueError, match="another job .*methods"):
        explain_dataset(model, data, ["gmar-l1"], out, resume=True, progress=False)
    with pytest.raises(ValueError, match="another job .*resolution"):
        explain_dataset(model, data, ["rollout"], out, resolution="pixels", resume=True, progress=False)
    again = explain_dataset(model, data, ["gmar-l1"], out, overwrite=True, progress=False)
    assert {r.method for r in again} == {"gmar-l1"} and len(shard_paths(out)) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "index.csv").write_text("mine\n")
    with pytest.raises(ValueError, match="did not write"):
        explain_dataset(model, data, ["rollout"], foreign, progress=False)
    assert (foreign / "index.csv").read_text() == "mine\n"


def test_resuming_a_finished_job_explains_nothing(model, processor, images, tmp_path):
    data = dataset(images, processor)
    first = explain_dataset(model, data, ["rollout"], tmp_path / "maps", batch_size=3, shard_mb=1e-4, progress=False)
    shards = [path.stat().st_mtime_ns for path in shard_paths(tmp_path / "maps")]
    again = explain_dataset(model, data, ["rollout"], tmp_path / "maps", batch_size=3, resume=True, progress=False)
    assert [path.stat().st_mtime_ns for path in shard_paths(tmp_path / "maps")] == shards
    assert [(r.item, r.map.tolist()) for r in again] == [(r.item, r.map.tolist()) for r in first]


JOB = """
import torch, transformers
from captum_gmar import explain_dataset
from captum_gmar.evaluation.data import open_dataset
torch.set_num_threads(1)
model = transformers.ViTForImageClassification.from_pretrained(model_dir).eval()
processor = transformers.AutoImageProcessor.from_pretrained(model_dir)
data = open_dataset(images, processor, None, 32)
explain_dataset(model, data, ["gmar-l1", "rollout"], out, batch_size=2, shard_mb=1e-4, resume=resume, progress=False)
"""


def job_process(model_dir, tmp_path, out, resume: bool) -> BaseProcess:
    """:data:`JOB` in a process of its own (forked, tests/forks.py), on 40 images (written on
    the first call); it exits with 0 when the job finished."""
    images = tmp_path / "images"
    if not images.exists():
        write_images(images, 40)
    return forks.start(JOB, model_dir=str(model_dir), images=str(images), out=str(out), resume=resume)


@pytest.mark.slow
def test_a_job_killed_at_any_point_resumes_without_loss_or_double(model_dir, tmp_path):
    full = tmp_path / "full"
    whole = job_process(model_dir, tmp_path, full, resume=False)
    whole.join()
    assert whole.exitcode == 0
    out = tmp_path / "killed"
    kills = 0
    for attempt in range(6):  # kill after a growing number of shards, then let it finish
        process = job_process(model_dir, tmp_path, out, resume=True)
        if attempt < 5:
            wanted = 4 * (attempt + 1)
            deadline = time.monotonic() + 60
            while process.is_alive() and len(shard_paths(out)) < wanted and time.monotonic() < deadline:
                time.sleep(0.01 * (attempt % 3))
            if process.is_alive():
                process.kill()  # SIGKILL
                kills += 1
        process.join(timeout=120)
        if process.exitcode == 0:
            break
    assert kills >= 2, "the job finished before it could be killed twice"
    got, expected = load_maps(out), load_maps(full)
    assert Counter((r.item, r.method) for r in got) == {(i, m): 1 for i in range(40) for m in ("gmar-l1", "rollout")}
    by_key = {(r.item, r.method): r.map for r in expected}
    for record in got:
        torch.testing.assert_close(record.map, by_key[(record.item, record.method)], rtol=1e-5, atol=1e-7)
    assert json.loads((out / "maps.json").read_text())["items"] == 40
    assert not list((out / "shards").glob("*.tmp"))


def test_zero_shot_prompts_are_the_classes(processor, images, tmp_path):
    import transformers
    from tiny_models import ZERO_SHOT_MODELS

    from captum_gmar.vit.model import VisionTransformer

    torch.manual_seed(0)
    clip = transformers.CLIPModel(ZERO_SHOT_MODELS["CLIPModel"]()).eval()
    prompts = torch.randint(0, clip.config.text_config.vocab_size, (3, 5))
    data = dataset(images, processor, labelled=False)
    records = explain_dataset(
        VisionTransformer(clip, text=prompts), data, ["gmar-l1"], tmp_path / "m", target="all", class_names=["a", "b", "c"], progress=False
    )
    assert Counter(r.target_name for r in records) == {"a": len(data), "b": len(data), "c": len(data)}
    x = data[2]["pixel_values"][None]
    for k in range(3):
        own = GMARAttribution(clip, text=prompts).attribute(x, target=k, output="patches")[0]
        torch.testing.assert_close(stored(records, "gmar-l1")[(2, k)].map, own, rtol=1e-4, atol=1e-7)


def test_a_planted_link_is_never_written_through(model, processor, images, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "maps"
    out.mkdir()
    (out / "shards").symlink_to(outside)
    with pytest.raises(ValueError, match="is a symbolic link"):
        explain_dataset(model, dataset(images, processor), ["rollout"], out, progress=False)
    assert not list(outside.iterdir())


def test_a_registered_method_on_its_own_wrapper_shares_nothing_and_is_right(model, processor, images, tmp_path):
    from captum_gmar.evaluation import methods as registry
    from captum_gmar.evaluation.methods import Method

    registry.register_method("gmar-alpha", lambda m: Method("GMAR (alpha 0.5)", GMARAttribution(m, alpha=0.5), {}))
    try:
        data = dataset(images, processor)
        records = explain_dataset(model, data, ["gmar-l1", "gmar-alpha"], tmp_path / "maps", progress=False)
    finally:
        del registry._REGISTERED["gmar-alpha"]
    x = data[1]["pixel_values"][None]
    record = stored(records, "gmar-alpha")[(1, stored(records, "gmar-l1")[(1, records[2].target)].target)]
    own = GMARAttribution(model, alpha=0.5).attribute(x, target=record.target, output="patches")[0]
    torch.testing.assert_close(record.map, own, rtol=1e-4, atol=1e-7)


def test_a_folder_of_other_files_is_refused(model, processor, images, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files captum-gmar did not write .notes.txt"):
        explain_dataset(model, dataset(images, processor), ["rollout"], out, progress=False)


def test_images_changed_before_a_resume_are_explained_again(model, processor, tmp_path, capsys):
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):  # the same file names in both class folders, other pictures
        (images / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(images / label / f"{i:04d}.png")
    out = tmp_path / "maps"
    explain_dataset(model, dataset(images, processor), ["gmar-l1"], out, batch_size=4, shard_mb=1e-4, progress=False)
    # another picture under one name; then the class folders swapped, so every picture moves
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(images / "cat" / "0000.png")
    data = dataset(images, processor)
    capsys.readouterr()
    replaced = explain_dataset(model, data, ["gmar-l1"], out, batch_size=4, resume=True, progress=False)
    assert "1 of the images done changed since their maps were made (the first: 'cat/0000.png')" in capsys.readouterr().err
    (images / "cat").rename(images / "was-cat")
    (images / "dog").rename(images / "cat")
    (images / "was-cat").rename(images / "dog")
    data = dataset(images, processor)
    swapped = explain_dataset(model, data, ["gmar-l1"], out, batch_size=4, resume=True, progress=False)
    assert "12 of the images done changed since their maps were made" in capsys.readouterr().err
    fresh = explain_dataset(model, data, ["gmar-l1"], tmp_path / "fresh", progress=False)
    assert len(replaced) == len(swapped) == len(fresh) == 12
    expected = {(r.image, r.target): r.map for r in fresh}
    assert {(r.image, r.target) for r in swapped} == set(expected)
    for record in swapped:
        torch.testing.assert_close(record.map, expected[(record.image, record.target)])
    with open(out / "index.csv", newline="") as handle:
        assert sorted((row["image"], row["item"]) for row in csv.DictReader(handle)) == sorted((r.image, str(r.item)) for r in fresh)


def test_a_second_job_is_refused_while_one_runs_and_a_killed_one_frees_the_folder(model_dir, model, processor, tmp_path):
    out = tmp_path / "maps"
    running = job_process(model_dir, tmp_path, out, resume=False)
    images = tmp_path / "images"
    try:
        deadline = time.monotonic() + 60
        while running.is_alive() and not shard_paths(out) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.is_alive(), "the job ended before a second one could start"
        for options in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(ValueError, match=rf"maps' is in use: a captum-gmar job is running there \(process {running.pid} on "):
                explain_dataset(model, dataset(images, processor, labelled=False), ["gmar-l1", "rollout"], out, progress=False, **options)
    finally:
        running.kill()  # SIGKILL
        running.join()
    records = explain_dataset(
        model,
        dataset(images, processor, labelled=False),
        ["gmar-l1", "rollout"],
        out,
        batch_size=2,
        shard_mb=1e-4,
        resume=True,
        progress=False,
    )
    assert Counter((r.item, r.method) for r in records) == {(i, m): 1 for i in range(40) for m in ("gmar-l1", "rollout")}


def test_a_full_disk_is_one_line_naming_the_folder_and_loses_nothing(model, processor, images, tmp_path, monkeypatch):
    import captum_gmar.files

    data = dataset(images, processor)
    out = tmp_path / "maps"
    syncs = []

    def full_after_three(descriptor):  # maps.json, the manifest, a shard; then the disk is full
        syncs.append(descriptor)
        if len(syncs) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(captum_gmar.files.os, "fsync", full_after_three)
    with pytest.raises(DiskFullError) as full:
        explain_dataset(model, data, ["rollout"], out, batch_size=4, shard_mb=1e-4, progress=False)
    message = str(full.value)
    assert f"no space left on the disk of {str(out / 'shards')!r}" in message and "resume the job" in message and "\n" not in message
    assert [p.name for p in (out / "shards").iterdir()] == ["rank0-000000.safetensors"]  # whole, nothing half-written
    monkeypatch.undo()
    resumed = explain_dataset(model, data, ["rollout"], out, batch_size=4, resume=True, progress=False)
    fresh = {r.item: r.map for r in explain_dataset(model, data, ["rollout"], tmp_path / "fresh", progress=False)}
    assert sorted(r.item for r in resumed) == sorted(fresh)
    for record in resumed:
        torch.testing.assert_close(record.map, fresh[record.item])


def test_a_file_name_that_is_not_utf8_is_explained_and_kept_losslessly(model, processor, images, tmp_path):
    odd = os.fsdecode(b"cat/caf\xe9-\xff.png")  # Latin-1 bytes: lone surrogates once decoded
    os.rename(images / "cat" / "0000.png", images / odd)
    (images / "dog" / "broken.png").write_bytes(b"not a png")
    data = dataset(images, processor, skip_unreadable=True)
    records = explain_dataset(model, data, ["rollout"], tmp_path / "maps", progress=False)
    assert len(records) == 10 and [entry["image"] for entry in records.unreadable] == ["dog/broken.png"]
    (stored,) = [r for r in records if r.image == odd]
    assert os.fsencode(stored.image) == b"cat/caf\xe9-\xff.png" and (images / stored.image).is_file()
    with open(tmp_path / "maps" / "index.csv", newline="", encoding="utf-8") as handle:
        assert r"cat/caf\xe9-\xff.png" in {row["image"] for row in csv.DictReader(handle)}
    header = json.loads(safe_open(str(stored.shard), "np").metadata()["images"])
    assert odd in header
