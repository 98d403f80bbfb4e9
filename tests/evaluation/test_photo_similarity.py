"""The real-photo similarity benchmark: composite tasks, the comparison on a
SimilarityModel, and class specificity."""

import json
import math
import re

import numpy as np
import pytest
import torch
import transformers

from captum_gmar.evaluation.data import CompositeTasks, collate
from captum_gmar.evaluation.photo_similarity import add_class_specificity, class_specificity, own_photo_margins, photo_similarity
from captum_gmar.evaluation.report import summarize
from captum_gmar.evaluation.runner import compare
from captum_gmar.imagedata.photos import make_composites
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import score_function
from captum_gmar.vit.similarity import SimilarityModel

for _module in ("skimage", "sklearn"):  # the bundled photos: pip install -e ".[photos]"
    pytest.importorskip(_module, reason='the photos extra is not installed: pip install -e ".[photos]"')


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    config = transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2)
    return transformers.Dinov2Model(config).eval()


@pytest.fixture(scope="module")
def processor():
    return transformers.BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)


def test_composite_tasks_explain_every_photo_with_its_cell(processor):
    photos = [np.full((50, 70, 3), 40 * k, np.uint8) for k in range(5)]
    composites = make_composites(photos, 3, seed=0, size=64)
    tasks = CompositeTasks(composites, [f"p{k}" for k in range(5)], processor)
    assert len(tasks) == int(composites.num_photos.sum())
    batch = collate([tasks[i] for i in range(len(tasks))])
    assert batch.pixel_values.shape == (len(tasks), 3, 32, 32)
    assert batch.has_mask.all() and batch.has_other.all()
    assert not (batch.masks & batch.other_masks).any() and (batch.masks | batch.other_masks).all()  # the cells partition it
    assert [info["photo"] for info in batch.info] == [f"p{k}" for k in batch.targets.tolist()]
    first = composites.photos[0][composites.photos[0] >= 0]
    assert batch.targets[: len(first)].tolist() == first.tolist()


def test_class_specificity_is_the_own_cells_shares_less_one():
    rows = [
        {"method": "A", "composite": 0, "photos": 2, "mass_inside": 0.7},
        {"method": "A", "composite": 0, "photos": 2, "mass_inside": 0.6},
        {"method": "A", "composite": 1, "photos": 4, "mass_inside": 0.25},
        {"method": "A", "composite": 1, "photos": 4, "mass_inside": 0.25},
        {"method": "A", "composite": 1, "photos": 4, "mass_inside": 0.5},
        {"method": "A", "composite": 1, "photos": 4, "mass_inside": 0.4},
        {"method": "A", "composite": 2, "photos": 2, "mass_inside": 0.9},  # incomplete: left out
        {"method": "B", "composite": 0, "photos": 2, "mass_inside": math.nan},
    ]
    assert class_specificity(rows)["A"] == pytest.approx([0.3, 0.4])
    assert class_specificity(rows)["B"] == []
    summary = add_class_specificity([{"method": "A"}, {"method": "B"}], rows)
    assert summary[0]["class_specificity"] == pytest.approx(0.35) and summary[0]["class_specificity_sem"] == pytest.approx(0.05)
    assert "class_specificity" not in summary[1]


def test_the_comparison_of_a_similarity(backbone, processor):
    bench = photo_similarity(backbone, processor, composites=3, seed=1, center="references")
    assert bench.model.num_labels == 9 and bench.names[1] == "chelsea"
    # the score the metrics perturb is the cosine itself, not a softmax over references
    x = collate([bench.tasks[0]]).pixel_values
    with torch.no_grad():
        torch.testing.assert_close(score_function(VisionTransformer(bench.model))(x), bench.model(x))
    rows = compare(
        bench.model,
        bench.tasks,
        methods=["gmar-l1", "rollout"],
        metrics=["faithfulness", "localisation", "sanity"],
        batch_size=4,
        robustness_limit=2,
        deletion_steps=2,
        baseline="zero",
        progress=False,
    )
    assert len(rows) == 2 * len(bench.tasks)
    assert "class_sensitivity" not in rows[0]  # defined for two labelled objects; composites have class_specificity
    specificity = class_specificity(rows)
    assert specificity["Attention rollout"] == pytest.approx([0.0] * 3, abs=1e-5)  # its map does not depend on the target
    assert all(math.isfinite(s) for s in specificity["GMAR (L1)"])
    entry = {e["method"]: e for e in summarize(rows)}["GMAR (L1)"]
    assert "randomised_head_correlation" not in entry and math.isfinite(
        entry["randomised_block_correlation"]
    )  # no classifier to re-initialise


def test_candidates_keep_the_composites_whose_own_photos_rank_highest(backbone, processor):
    drawn = photo_similarity(backbone, processor, composites=6, seed=2, center="references")
    margins = own_photo_margins(drawn.model, drawn.tasks)
    x = collate([drawn.tasks[0]]).pixel_values
    with torch.no_grad():
        scores = drawn.model(x)[0]
    photos = drawn.tasks.composites.photos[0]
    own, others = photos[photos >= 0].tolist(), [k for k in range(9) if k not in photos]
    assert margins[0] == pytest.approx(float(scores[own].min() - scores[others].max()))
    kept = photo_similarity(backbone, processor, composites=2, seed=2, center="references", candidates=6)
    best = sorted(torch.argsort(margins, descending=True, stable=True)[:2].tolist())
    assert np.array_equal(kept.tasks.composites.photos, drawn.tasks.composites.photos[best])  # the best two, in the order drawn
    assert np.array_equal(kept.tasks.composites.masks, drawn.tasks.composites.masks[best])
    again = photo_similarity(backbone, processor, composites=2, seed=2, center="references", candidates=6)
    assert again.tasks.fingerprint == kept.tasks.fingerprint
    with pytest.raises(ValueError, match="candidates must be at least composites"):
        photo_similarity(backbone, processor, composites=2, candidates=1)


def test_the_photos_named_are_the_classes(backbone, processor):
    names = ["flower", "chelsea", "rocket", "coffee", "astronaut"]
    bench = photo_similarity(backbone, processor, composites=3, seed=0, photos=names)
    assert bench.names == names and bench.model.references.shape[0] == 5
    assert set(bench.tasks.composites.photos.ravel()) <= {-1, 0, 1, 2, 3, 4}


def test_the_deletion_baseline_is_checked(backbone, processor):
    bench = photo_similarity(backbone, processor, composites=1)
    with pytest.raises(ValueError, match="baseline must be 'blur' or 'zero', got 'noise'"):
        compare(bench.model, bench.tasks, methods=["rollout"], metrics=["faithfulness"], baseline="noise", progress=False)
    with pytest.raises(ValueError, match="center must be 'none' or 'references', got 'gallery'"):
        photo_similarity(backbone, processor, composites=1, center="gallery")


def test_centring_on_the_references_changes_the_cosine_not_the_task(backbone, processor):
    plain = photo_similarity(backbone, processor, composites=2, seed=5)
    centred = photo_similarity(backbone, processor, composites=2, seed=5, center="references")
    assert isinstance(centred.model, SimilarityModel) and centred.model.center is not None and plain.model.center is None
    assert plain.tasks.fingerprint == centred.tasks.fingerprint
    torch.testing.assert_close(plain.model.references.norm(dim=-1), torch.ones(9))
    assert not torch.allclose(plain.model.references, centred.model.references)


def test_the_figure_says_what_its_numbers_are(backbone, processor, tmp_path, monkeypatch):
    from matplotlib.text import Text

    from captum_gmar.evaluation import results_folder

    bench = photo_similarity(backbone, processor, composites=2, seed=1, center="references")
    compare(
        bench.model,
        bench.tasks,
        methods=["rollout", "gae"],
        metrics=["localisation"],
        batch_size=4,
        results=tmp_path / "results.csv",
        progress=False,
    )
    figures = []
    monkeypatch.setattr(results_folder, "save_figure", lambda figure, path, dpi: figures.append(figure))
    report = results_folder.write_report(
        tmp_path, bench.model, bench.tasks, id2label=dict(enumerate(bench.names)), figure_rows=2, gallery=1
    )
    assert "class_sensitivity" not in report.table and "class_specificity" in report.table
    texts = [text.get_text() for text in figures[0].findobj(Text)]
    summary = {entry["method"]: entry for entry in json.loads((tmp_path / "summary.json").read_text())}
    specificity = round(summary["Attention rollout"]["class_specificity"], 2) or 0.0  # no "-0.00" on the figure
    rollout = f"map (nearly) the same whichever photo is named (class specificity {specificity:.2f})"
    assert any(text.replace("\n", " ").startswith(f"Attention rollout {rollout}") for text in texts)
    gae = f"(class specificity {summary['GAE']['class_specificity']:.2f})"
    assert any(text.startswith("GAE\n") and text.replace("\n", " ").endswith(gae) for text in texts)  # the run's own number
    assert any(re.fullmatch(r"like \w+ \(cos -?\d\.\d\d, rank \d of 9\)(\nmost like: .*)?", text) for text in texts)
    caption = " ".join(text.replace("\n", " ") for text in texts)
    assert "cos, the cosine similarity of the composite's embedding to the named photo's reference view" in caption
    assert [t.get_text() for t in figures[0].legends[0].get_texts()] == ["named photo (its place in the composite)"]  # not "explained item"
    assert "both less the mean of the references' embeddings" in caption and "rank among the 9 photos' references" in caption
    assert "from 0 to the map's 99th percentile" in caption and texts.count("relevance") >= 2  # the colour bars' label
