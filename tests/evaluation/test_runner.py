"""The comparison end to end with tiny random models on CPU: on scenes, on any data set of
explanation tasks, streamed to a results file and resumed."""

import json
import math
import os
import platform

import pytest
import torch
import transformers
from toy_tasks import ToyTasks

from captum_gmar.evaluation.data import SceneTasks
from captum_gmar.evaluation.methods import METHOD_KEYS, build_methods
from captum_gmar.evaluation.report import markdown_table, read_csv, summarize, write_csv
from captum_gmar.evaluation.runner import compare, run_file
from captum_gmar.imagedata.scenes import make_scenes

#: measurements, not results: they differ from run to run
TIMINGS = ("seconds_per_image", "peak_memory_mb")


@pytest.fixture(scope="module")
def scenes():
    try:
        return make_scenes(4, "test", seed=3)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def tiny_vit(image_size: int, num_labels: int, **config) -> transformers.ViTForImageClassification:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=num_labels,
        **config,
    )
    return transformers.ViTForImageClassification(config).eval()


@pytest.fixture(scope="module")
def scene_model():
    return tiny_vit(64, 10, problem_type="multi_label_classification")


@pytest.fixture(scope="module")
def toy_model():
    return tiny_vit(32, 3)


def without_timings(rows):
    return [{key: value for key, value in row.items() if key not in TIMINGS} for row in rows]


def same_rows(first, second) -> bool:
    """Equal row for row, NaN equal to NaN."""

    def normal(rows):
        return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in without_timings(rows)]

    return normal(first) == normal(second)


def test_compare_end_to_end_on_scenes(scenes, scene_model, tmp_path):
    rows = compare(
        scene_model,
        SceneTasks(scenes),
        methods=["gmar-l1", "rollout", "ig"],
        device="cpu",
        batch_size=3,
        robustness_limit=2,
        ig_steps=4,
        progress=False,
    )
    tasks = int(scenes.num_items.sum())
    assert len(rows) == 3 * tasks
    assert sorted(row["item"] for row in rows) == sorted(list(range(tasks)) * 3)
    gmar_rows = [row for row in rows if row["method"] == "GMAR (L1)"]
    assert all(-1 <= row["head_rank_correlation"] <= 1 for row in gmar_rows)
    assert all("head_rank_correlation" not in row for row in rows if row["method"] != "GMAR (L1)")
    assert all(0 <= row["mass_inside"] <= 1 and 0 <= row["deletion_auc"] <= 1 for row in rows)
    assert sum(not math.isnan(row["infidelity"]) for row in gmar_rows) == 2
    assert all(math.isnan(row["class_sensitivity"]) != row["two_items"] for row in rows)
    summary = summarize(rows)
    assert [entry["method"] for entry in summary] == ["GMAR (L1)", "Attention rollout", "IG (4 steps)"]
    table = markdown_table(summary)
    assert table.count("\n| ") == 3 and "deletion_auc" in table
    write_csv(rows, tmp_path / "rows.csv")
    assert same_rows(list(read_csv(tmp_path / "rows.csv")), rows)


def test_compare_is_reproducible(scenes, scene_model):
    kwargs = dict(methods=["gae"], metrics=["robustness"], device="cpu", robustness_limit=3, progress=False, seed=5)
    first, second = (compare(scene_model, SceneTasks(scenes), **kwargs) for _ in range(2))
    assert [r["sensitivity"] for r in first[:3]] == [r["sensitivity"] for r in second[:3]]


def test_compare_rejects_bad_arguments(toy_model, tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        compare(toy_model, ToyTasks(2), metrics=["beauty"], device="cpu", progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        compare(toy_model, ToyTasks(2), methods=["lime"], device="cpu", progress=False)
    with pytest.raises(ValueError, match="needs the results file"):
        compare(toy_model, ToyTasks(2), device="cpu", resume=True, progress=False)
    with pytest.raises(ValueError, match="relevance_map must be one of positive, signed, abs, got 'sign'"):
        compare(toy_model, ToyTasks(2), device="cpu", relevance_map="sign", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            compare(toy_model, ToyTasks(2), device="cuda", progress=False)


def test_localisation_where_the_masks_are(toy_model):
    rows = compare(toy_model, ToyTasks(8), methods=["rollout"], metrics=["localisation"], device="cpu", batch_size=3, progress=False)
    for row in rows:
        i = row["item"]
        assert row["name"] == f"toy{i}" and row["target"] == i % 3
        assert math.isnan(row["mass_inside"]) == math.isnan(row["pointing_game"]) == (i % 4 == 3)
        assert math.isnan(row["class_sensitivity"]) == (i % 2 == 1 or i % 4 == 3)


def test_items_are_read_once_a_batch_at_a_time(toy_model):
    data = ToyTasks(12)
    compare(toy_model, data, methods=["rollout"], metrics=["faithfulness"], device="cpu", batch_size=3, progress=False)
    assert data.reads == 12 and data.most_alive <= 3


def test_rows_are_written_as_batches_finish_and_resume_equals_an_uninterrupted_run(toy_model, tmp_path):
    kwargs = dict(methods=["gmar-l1", "ig"], device="cpu", batch_size=3, robustness_limit=4, ig_steps=2, progress=False)
    whole = tmp_path / "whole.csv"
    compare(toy_model, ToyTasks(10), results=whole, **kwargs)

    path = tmp_path / "results.csv"
    with pytest.raises(RuntimeError, match="crash at item 7"):
        compare(toy_model, ToyTasks(10, fail_at=7), results=path, **kwargs)
    written = list(read_csv(path))
    assert sorted({row["item"] for row in written}) == list(range(6))  # batches 0 and 1, not batch 2
    assert same_rows(written, list(read_csv(whole))[: len(written)])
    with open(path, "a") as handle:  # a crash in the middle of a line
        handle.write("GMAR (L1),6,toy6,0,0.01,")

    data = ToyTasks(10)
    compare(toy_model, data, results=path, resume=True, **kwargs)
    assert data.reads == 4  # items 6 to 9 only
    assert same_rows(list(read_csv(path)), list(read_csv(whole)))
    compare(toy_model, ToyTasks(10), results=path, resume=True, **kwargs)  # nothing left to do
    assert same_rows(list(read_csv(path)), list(read_csv(whole)))


def test_resume_refuses_the_results_of_another_run(toy_model, tmp_path):
    path = tmp_path / "results.csv"
    kwargs = dict(methods=["rollout"], metrics=["faithfulness"], device="cpu", batch_size=2, progress=False)
    compare(toy_model, ToyTasks(4), results=path, **kwargs)
    assert json.loads(run_file(path).read_text())["batch_size"] == 2
    with pytest.raises(ValueError, match="batch_size 2 then, 3 now"):
        compare(toy_model, ToyTasks(4), results=path, resume=True, **{**kwargs, "batch_size": 3})
    with pytest.raises(ValueError, match="items 4 then, 5 now"):
        compare(toy_model, ToyTasks(5), results=path, resume=True, **kwargs)
    with pytest.raises(ValueError, match="relevance_map 'positive' then, 'signed' now"):
        compare(toy_model, ToyTasks(4), results=path, resume=True, relevance_map="signed", **kwargs)
    retrained = tiny_vit(32, 3)
    with torch.no_grad():
        retrained.classifier.bias.add_(0.1)
    with pytest.raises(ValueError, match="model_fingerprint"):
        compare(retrained, ToyTasks(4), results=path, resume=True, **kwargs)
    run_file(path).unlink()
    with pytest.raises(ValueError, match="is missing"):
        compare(toy_model, ToyTasks(4), results=path, resume=True, **kwargs)


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/statm"), reason="CPU memory is measured on Linux with glibc"
)
def test_memory_is_measured_for_every_method_whatever_ran_before(scene_model):
    """The warm-ups (IG's first) must not leave freed memory resident for the cheaper
    methods to reuse unseen: each method's maps alone are 8 x 64 x 64 floats (128 KiB)."""
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    data = [{"pixel_values": image, "label": 1} for image in x]
    rows = compare(
        scene_model, data, methods=["ig", "rollout", "gae"], metrics=[], device="cpu", batch_size=8, ig_steps=200, progress=False
    )
    assert all(row["peak_memory_mb"] >= 0.125 for row in rows), {row["method"]: row["peak_memory_mb"] for row in rows}


def test_every_method_gives_pixel_maps(scene_model):
    x = torch.randn(2, 3, 64, 64)
    for method in build_methods(scene_model, METHOD_KEYS, ig_steps=3):
        maps = method(x, torch.tensor([1, 2]))
        assert maps.shape == (2, 64, 64) and (maps >= 0).all(), method.name


def test_unreadable_items_are_skipped_named_once_listed_and_resumed(toy_model, tmp_path, capsys):
    kwargs = dict(
        methods=["rollout", "gae"], metrics=["faithfulness", "robustness"], device="cpu", batch_size=3, robustness_limit=5, progress=False
    )
    unreadable = (1, 6, 7, 8)  # one in batch 0, all of batch 2
    whole = tmp_path / "whole.csv"
    compare(toy_model, ToyTasks(11, unreadable=unreadable), results=whole, **kwargs)
    rows = list(read_csv(whole))
    assert sorted({row["item"] for row in rows}) == [0, 2, 3, 4, 5, 9, 10] and len(rows) == 14
    assert all(row["name"] == f"toy{row['item']}" for row in rows)
    # robustness on the first 5 items (0 to 4), whichever were skipped
    assert {row["item"] for row in rows if not math.isnan(row["infidelity"])} == {0, 2, 3, 4}
    run = json.loads(run_file(whole).read_text())
    assert run["unreadable_count"] == 4
    assert run["unreadable"] == [{"item": i, "name": f"toy{i}", "error": f"cannot read image 'toy{i}'"} for i in unreadable]
    err = capsys.readouterr().err
    assert all(err.count(f"skipped: cannot read image 'toy{i}'") == 1 for i in unreadable)

    path = tmp_path / "results.csv"
    with pytest.raises(RuntimeError, match="crash at item 10"):
        compare(toy_model, ToyTasks(11, fail_at=10, unreadable=unreadable), results=path, **kwargs)
    assert json.loads(run_file(path).read_text())["unreadable_count"] == 4
    with open(path, "a") as handle:  # batch 3 cut short (9 written, 10 not)
        handle.write("Attention rollout,9,toy9,0,0.1,0.2,0.3,0.4,0.5,0.6\n")
    capsys.readouterr()
    data = ToyTasks(11, unreadable=unreadable)
    compare(toy_model, data, results=path, resume=True, **kwargs)
    assert data.reads == 2 and "skipped" not in capsys.readouterr().err  # items 9 and 10; the skipped ones are not read again
    assert same_rows(list(read_csv(path)), rows)
    assert json.loads(run_file(path).read_text()) == run


def test_a_resumed_run_rereads_the_unreadable_items_of_an_unfinished_batch(toy_model, tmp_path, capsys):
    kwargs = dict(methods=["rollout"], metrics=["faithfulness"], device="cpu", batch_size=3, progress=False)
    path = tmp_path / "results.csv"
    with pytest.raises(RuntimeError, match="crash at item 5"):
        compare(toy_model, ToyTasks(6, fail_at=5, unreadable=(4,)), results=path, **kwargs)
    assert json.loads(run_file(path).read_text())["unreadable_count"] == 0  # batch 1 never finished
    compare(toy_model, ToyTasks(6, unreadable=(4,)), results=path, resume=True, **kwargs)
    assert [entry["item"] for entry in json.loads(run_file(path).read_text())["unreadable"]] == [4]
    assert sorted({row["item"] for row in read_csv(path)}) == [0, 1, 2, 3, 5]


def test_links_beside_the_results_are_never_written_through(toy_model, tmp_path):
    """A link planted under the names the runner once wrote its temporary files to (the
    settings' ``.new``, the kept rows' ``.kept``) leads nowhere: every file is replaced."""
    kwargs = dict(methods=["rollout"], metrics=["faithfulness"], device="cpu", batch_size=2, progress=False)
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's file")
    path = tmp_path / "out" / "results.csv"
    path.parent.mkdir()
    (path.parent / "results.run.json.new").symlink_to(mine)
    with pytest.raises(RuntimeError, match="crash at item 3"):
        compare(toy_model, ToyTasks(4, fail_at=3), results=path, **kwargs)
    assert mine.read_text() == "the user's file"
    with open(path, "a") as handle:  # batch 1 cut short: resuming rewrites the file without its rows
        handle.write("Attention rollout,2,toy2,2,0.1,0.2,0.3,0.4,0.5,0.6\n")
    (path.parent / "results.csv.kept").symlink_to(mine)
    compare(toy_model, ToyTasks(4), results=path, resume=True, **kwargs)
    assert mine.read_text() == "the user's file"
    assert not path.is_symlink() and not run_file(path).is_symlink()
    assert sorted({row["item"] for row in read_csv(path)}) == [0, 1, 2, 3]
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.csv", "results.csv.kept", "results.run.json", "results.run.json.new"]


def test_results_that_are_symbolic_links_are_refused(toy_model, tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's file")
    kwargs = dict(methods=["rollout"], metrics=["faithfulness"], device="cpu", progress=False)
    (tmp_path / "results.csv").symlink_to(mine)
    (tmp_path / "dangling.run.json").symlink_to(tmp_path / "nowhere.json")
    for name in ("results.csv", "dangling.csv"):
        with pytest.raises(ValueError, match="is a symbolic link: name a results file of its own"):
            compare(toy_model, ToyTasks(2), results=tmp_path / name, **kwargs)
    assert mine.read_text() == "the user's file" and not (tmp_path / "nowhere.json").exists()
    with pytest.raises(OSError, match="is a symbolic link, which captum-gmar does not write through"):
        write_csv([{"method": "a", "item": 0}], tmp_path / "results.csv")
    assert mine.read_text() == "the user's file"


def test_a_comparison_wraps_the_model_once(toy_model, monkeypatch):
    from captum_gmar.vit.model import VisionTransformer

    built = []
    init = VisionTransformer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(args[0] if args else kwargs["model"])
        init(self, *args, **kwargs)

    monkeypatch.setattr(VisionTransformer, "__init__", counting_init)
    compare(
        toy_model,
        ToyTasks(3),
        methods=list(METHOD_KEYS),
        metrics=["faithfulness", "localisation", "robustness", "heads"],
        ablation=["layers"],
        device="cpu",
        ig_steps=2,
        deletion_steps=2,
        robustness_limit=1,
        progress=False,
    )
    assert built == [toy_model]
