"""``captum-gmar explain``: figures and pages of one image, a class or a similarity."""

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from captum_gmar.cli import main
from captum_gmar.evaluation.report import read_csv


def test_explain_resizes_to_the_models_size_and_explains_the_predicted_class(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["explain", photo, "--model", model_dir, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "predicted: " in printed and "explaining" not in printed  # the default target is the prediction
    assert "GMAR (L1)" in printed and out.is_file()
    assert Image.open(out).size[0] > 500


def test_explain_an_image_whose_name_holds_dollars_draws_it_as_given(tmp_path, monkeypatch):
    """matplotlib reads ``$...$`` as mathtext: ``$\\bad$`` failed to draw, after the work."""
    from captum_gmar import visualization

    image = tmp_path / "$\\bad$.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    figures = []
    grid = visualization.comparison_grid
    monkeypatch.setattr(visualization, "comparison_grid", lambda *args, **kwargs: figures.append(grid(*args, **kwargs)) or figures[-1])
    out = tmp_path / "fig.png"
    argv = ["explain", str(image), "--model", "vit-tiny", "--methods", "gmar-l1,rollout", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0 and Image.open(out).size[0] > 500
    title = figures[0]._suptitle
    assert title.get_text().startswith("$\\bad$.png (") and not title.get_parse_math()


def test_explain_a_class_by_name_or_index(model_dir, photo, tmp_path, capsys, monkeypatch):
    from captum_gmar.evaluation import methods

    seen = []

    original = methods.Method.maps_and_head_weights  # explain takes GMAR's head weights too, for --out page.html

    def spy(self, images, targets):
        seen.append((tuple(images.shape), targets.tolist()))
        return original(self, images, targets)

    monkeypatch.setattr(methods.Method, "maps_and_head_weights", spy)
    main(
        [
            "explain",
            photo,
            "--model",
            model_dir,
            "--target",
            "sneaker",
            "--methods",
            "rollout",
            "--out",
            str(tmp_path / "a.png"),
            "--device",
            "cpu",
        ]
    )
    main(
        [
            "explain",
            photo,
            "--model",
            model_dir,
            "--target",
            "7",
            "--methods",
            "rollout",
            "--native-resolution",
            "--out",
            str(tmp_path / "b.png"),
            "--device",
            "cpu",
        ]
    )
    assert seen == [((1, 3, 64, 64), [7]), ((1, 3, 200, 300), [7])]


def test_native_resolution_too_large_for_memory_fails_before_the_prediction(model_dir, photo, capsys, monkeypatch):
    import captum_gmar.evaluation.runner
    import captum_gmar.methods.guard

    def no_prediction(vit):
        raise AssertionError("the model ran")

    monkeypatch.setattr(captum_gmar.methods.guard, "available_bytes", lambda device: 2**20)
    monkeypatch.setattr(captum_gmar.evaluation.runner, "score_function", no_prediction)
    code, err = run(capsys, "explain", photo, "--model", model_dir, "--native-resolution", "--device", "cpu")
    assert code == 2 and "200x300 px" in err and "drop --native-resolution" in err


@pytest.mark.parametrize("method", ["gmar-l1", "attnlrp"])
def test_a_call_too_slow_for_any_method_fails_before_the_prediction(model_dir, photo, capsys, monkeypatch, method):
    import captum_gmar.evaluation.runner
    import captum_gmar.methods.guard

    def no_prediction(vit):
        raise AssertionError("the model ran")

    monkeypatch.setattr(captum_gmar.methods.guard, "SLOW_CALL_SECONDS", 0.0)
    monkeypatch.setattr(captum_gmar.evaluation.runner, "score_function", no_prediction)
    code, err = run(capsys, "explain", photo, "--model", model_dir, "--methods", method, "--device", "cpu")
    assert code == 2 and "allow_slow=True" in err and "Traceback" not in err


def test_images_smaller_than_a_patch_are_resized_by_explain_as_by_compare(tmp_path, capsys):
    """The reference model's processor resizes a 1x1 or a 1x10000 px image to 64 px, for
    explain as for compare --data; only --native-resolution needs a patch."""
    for name, size in (("dot.png", (1, 1)), ("line.png", (10000, 1))):
        image = Image.fromarray(np.full((size[1], size[0], 3), 200, dtype=np.uint8))
        image.save(tmp_path / name)
        (tmp_path / "data" / "Trouser").mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "data" / "Trouser" / name)
        argv = ["explain", str(tmp_path / name), "--model", "vit-tiny", "--methods", "rollout", "--device", "cpu"]
        assert main([*argv, "--out", str(tmp_path / f"{name}.svg")]) == 0 and (tmp_path / f"{name}.svg").stat().st_size
        assert "predicted: " in capsys.readouterr().out
        code, err = run(capsys, *argv, "--native-resolution", "--out", str(tmp_path / "native.png"))
        assert code == 2 and f"is {size[0]}x{size[1]} px, smaller than one 8x8 patch of the model" in err
    out = tmp_path / "out"
    argv = ["compare", "--model", "vit-tiny", "--data", str(tmp_path / "data"), "--methods", "rollout", "--metrics", "faithfulness"]
    assert main([*argv, "--device", "cpu", "--figure-rows", "0", "--gallery", "0", "--out", str(out)]) == 0
    assert sorted({row["file"] for row in read_csv(out / "results.csv")}) == ["Trouser/dot.png", "Trouser/line.png"]


def test_explain_a_model_of_the_hugging_face_cache(model_dir, photo, tmp_path, capsys, hub_cache):
    argv = ["explain", photo, "--model", "someone/tiny-vit", "--methods", "rollout", "--device", "cpu", "--out", str(tmp_path / "fig.png")]
    code, err = run(capsys, *argv)
    assert code == 2 and "nor a model in the Hugging Face cache (download one with: hf download MODEL_ID)" in err
    hub_cache("someone/tiny-vit", model_dir)
    assert main(argv) == 0 and (tmp_path / "fig.png").is_file()
    assert "predicted: " in capsys.readouterr().out


def test_explain_the_similarity_to_reference_images(backbone_dir, photo, tmp_path, capsys):
    references = []
    for k in range(2):
        path = tmp_path / f"ref{k}.png"
        Image.fromarray(np.random.default_rng(k + 1).integers(0, 255, (50 + 10 * k, 40, 3), dtype=np.uint8)).save(path)
        references.append(str(path))
    out = tmp_path / "similar.png"
    assert (
        main(["explain", photo, "--model", backbone_dir, "--similar-to", *references, "--methods", "gmar-l1,attnlrp", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "similarity to ref0.png: cos " in printed and "similarity to ref1.png: cos " in printed
    assert Image.open(out).size[0] > 0
    assert (
        main(
            [
                "explain",
                photo,
                "--model",
                backbone_dir,
                "--similar-to",
                *references,
                "--center",
                "references",
                "--methods",
                "rollout",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "(centred)" in capsys.readouterr().out


def test_explain_never_writes_over_its_images(capsys, tmp_path, photo, backbone_dir, no_model_loading):
    reference = tmp_path / "reference.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(reference)
    (tmp_path / "hard-link.png").hardlink_to(reference)
    before = Path(photo).read_bytes(), reference.read_bytes()
    cases = [
        (["explain", photo, "--out", photo], f"--out {photo!r} is the image {photo!r}, which the figure would replace: name another file"),
        (["explain", photo, "--out", str(tmp_path / "." / "photo.jpg")], "which the figure would replace"),
        (
            ["explain", photo, "--model", backbone_dir, "--similar-to", photo, str(reference), "--out", str(tmp_path / "hard-link.png")],
            f"is the image {str(reference)!r}",
        ),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert (Path(photo).read_bytes(), reference.read_bytes()) == before


def test_an_embedding_model_without_references_is_refused_before_it_loads(capsys, photo, no_model_loading):
    cases = [
        ["explain", photo, "--model", "dinov2-small-backbone"],
        ["compare", "--model", "dinov2-small-backbone", "--device", "cpu"],
    ]
    for argv in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and "'dinov2-small-backbone' is a Dinov2Model, which returns an embedding, not classes" in err, (argv, err)


def test_a_classifier_given_for_a_similarity_is_explained_through_its_backbone(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "backbone.png"
    assert main(["explain", photo, "--model", model_dir, "--similar-to", photo, "--methods", "gmar-l1", "--out", str(out)]) == 0
    assert "similarity to photo.jpg: cos 1.000" in capsys.readouterr().out  # the same image: its own reference
