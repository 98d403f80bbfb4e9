"""``captum-gmar demo``: the settings it runs with (its results: tests/test_results_unchanged.py)."""

import argparse

from captum_gmar.cli import demo
from captum_gmar.evaluation.settings import Settings


def demo_options(*argv):
    parser = argparse.ArgumentParser()
    demo.add_parser(parser.add_subparsers(), "demo")
    args = parser.parse_args(["demo", *argv])
    return args.options(args)


def test_the_demo_compares_gmar_with_rollout_and_ig_on_localisation():
    options = demo_options()
    assert options.model == "vit-tiny" and options.center == "none" and options.out == "demo-output"
    assert options.settings == Settings(
        methods=("gmar-l1", "rollout", "ig"), metrics=("localisation",), robustness_limit=0, ig_internal_batch_size=100
    )


def test_the_embedding_models_demo_explains_centred_similarities_with_attnlrp_and_gae():
    options = demo_options("--model", "dinov2-small-backbone", "--seed", "3")
    assert options.center == "references"
    assert options.settings.methods == ("gmar-l1", "rollout", "attnlrp", "gae") and options.settings.baseline == "zero"
    assert options.settings.seed == 3


def test_the_demo_says_what_it_writes_before_writing_it(tmp_path, monkeypatch, capsys):
    from captum_gmar.cli import compare as compare_command
    from captum_gmar.evaluation import results_folder, runner

    options = demo_options("--device", "cpu", "--out", str(tmp_path / "out"))
    said = []

    def write_report(out, *args, **kwargs):
        said.append(capsys.readouterr().out)  # what was printed before the slow part began
        return results_folder.Report([], "| table |", [])

    monkeypatch.setattr(runner, "compare", lambda *args, **kwargs: None)
    monkeypatch.setattr(results_folder, "write_report", write_report)
    compare_command.run_comparison(options, lambda: compare_command.Subject(None, list(range(12)), {}))
    assert said == [
        f"writing summary.md, summary.json, report.html (maps of 12 items) and comparison.png (6 rows) in {tmp_path / 'out'}, "
        "computing their maps again ...\n"
    ]
