"""``captum-gmar export-scenes``."""

from captum_gmar.cli import main
from captum_gmar.evaluation.report import read_csv


def test_export_scenes_writes_a_folder_compare_reads(tmp_path, capsys, fashion_mnist):
    assert main(["export-scenes", str(tmp_path / "scenes"), "--n", "4", "--seed", "1"]) == 0
    assert "and their masks to" in capsys.readouterr().out
    images = sorted(p.relative_to(tmp_path / "scenes").as_posix() for p in (tmp_path / "scenes").rglob("*.png"))
    masks = [p for p in images if p.startswith("masks/")]
    assert len(masks) * 2 == len(images) and {"masks/" + p for p in images if p not in masks} == set(masks)
    assert (
        main(
            [
                "compare",
                "--data",
                str(tmp_path / "scenes"),
                "--methods",
                "rollout",
                "--metrics",
                "localisation",
                "--device",
                "cpu",
                "--figure-rows",
                "0",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert all(row["pointing_game"] in (0.0, 1.0) for row in read_csv(tmp_path / "out" / "results.csv"))


def test_export_scenes_draws_the_training_split_when_asked(tmp_path, capsys, fashion_mnist):
    from PIL import Image

    for split in ("test", "train"):
        assert main(["export-scenes", str(tmp_path / split), "--n", "3", "--seed", "1", "--items", "1", "--split", split]) == 0
    test, train = (sorted((tmp_path / split).rglob("*.png")) for split in ("test", "train"))
    assert len(test) == len(train) == 6  # three images, three masks
    assert [Image.open(a).tobytes() for a in test] != [Image.open(b).tobytes() for b in train]  # other items, same seed
    code = None
    try:
        main(["export-scenes", str(tmp_path / "x"), "--split", "validation"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2 and "argument --split: invalid choice: 'validation'" in capsys.readouterr().err and not (tmp_path / "x").exists()
