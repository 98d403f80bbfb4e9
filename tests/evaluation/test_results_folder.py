"""The results folder from Python: ``compare(...)`` then ``write_report(...)``, as in a notebook."""

import json

import pytest

from captum_gmar import load_reference_model, load_sample_scenes
from captum_gmar.evaluation import SceneTasks, Settings, compare, write_report
from captum_gmar.files import MANIFEST


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """The reference model's bundled scenes compared, its rows in ``out/results.csv``."""
    out = tmp_path_factory.mktemp("results")
    model, tasks = load_reference_model(), SceneTasks(load_sample_scenes())
    settings = Settings(methods=["gmar-l1", "rollout"], metrics=["localisation"], batch_size=6, robustness_limit=0)
    compare(model, tasks, settings, results=out / "results.csv", device="cpu", progress=False)
    return out, model, tasks


def test_compare_then_write_report_writes_the_whole_folder(comparison):
    import matplotlib.pyplot as plt

    out, model, tasks = comparison
    figures = plt.get_fignums()
    report = write_report(out, model, tasks, model_name="vit-tiny", device="cpu", command="notebook", figure_rows=2, gallery=3)
    assert [path.name for path in report.files] == [
        "results.csv",
        "results.run.json",
        "summary.md",
        "summary.json",
        "report.html",
        "comparison.png",
    ]
    assert all(path.is_file() for path in report.files) and report.skipped == []
    assert plt.get_fignums() == figures  # the figure written is closed: a notebook running many reports holds none of them
    summary = (out / "summary.md").read_text()
    header = summary.splitlines()[0]
    # no deletion/insertion baseline: the faithfulness metrics, which fill removed pixels with one, did not run
    assert header.startswith("Model: vit-tiny; device: cpu (CPU), torch ")
    assert header.endswith("; command: `notebook`") and report.table in summary
    assert [entry["method"] for entry in json.loads((out / "summary.json").read_text())] == ["GMAR (L1)", "Attention rollout"]
    page = (out / "report.html").read_text()
    assert "command: notebook" in page and "item 2:" in page and "item 3:" not in page  # the first three items' maps
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert listed == ["comparison.png", "report.html", "summary.json", "summary.md"]


def test_write_report_never_replaces_a_file_it_did_not_write(comparison, tmp_path):
    out, model, tasks = comparison
    (out / "comparison.png").unlink()
    (out / "comparison.png").write_text("the user's")
    (out / MANIFEST).write_text(json.dumps({"files": ["summary.md", "summary.json", "report.html"]}))
    with pytest.raises(FileExistsError, match="holds 'comparison.png', which captum-gmar did not write"):
        write_report(out, model, tasks, device="cpu")
    assert (out / "comparison.png").read_text() == "the user's"
    with pytest.raises(ValueError, match="gallery must be between 0 and 200"):
        write_report(out, model, tasks, gallery=201)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path, model, tasks)


def test_a_specificity_that_rounds_to_nothing_reads_zero():
    from captum_gmar.evaluation.results_folder import specificity_note

    assert specificity_note(-0.003).endswith("(class specificity 0.00)") and "-0.00" not in specificity_note(-0.004)
    assert specificity_note(-0.2).startswith("map moves off") and specificity_note(0.16).endswith("(class specificity 0.16)")
