"""Image folders: the layouts scan_folder reads, their errors, regions, and exported scenes."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captum_gmar.errors import UnreadableImageError
from captum_gmar.imagedata.folder import Region, export_scenes, read_image, read_region, scan_folder, scan_images
from captum_gmar.imagedata.scenes import make_scenes

ID2LABEL = {"0": "cat", "1": "dog", "2": "T-shirt/top"}


def write_image(path: Path, size: tuple[int, int] = (20, 10), mode: str = "RGB", value: int = 0) -> None:
    """An image of ``size = (W, H)``, one value everywhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_class_folders_with_mirrored_masks(tmp_path):
    for file in ("cat/a.jpg", "cat/sub/b.png", "dog/c.png", "T-shirt-top/d.png", "2/e.png"):
        write_image(tmp_path / file)
    write_image(tmp_path / "masks/cat/a.png", mode="L")  # a .jpg image's mask is a .png
    write_image(tmp_path / "masks/dog/c.png", mode="L")
    items = scan_folder(tmp_path, ID2LABEL)
    assert [(item.file, item.label) for item in items] == [
        ("2/e.png", 2),
        ("T-shirt-top/d.png", 2),
        ("cat/a.jpg", 0),
        ("cat/sub/b.png", 0),
        ("dog/c.png", 1),
    ]
    masks = {item.file: item.region for item in items}
    assert masks["cat/a.jpg"] == Region(mask="masks/cat/a.png") and masks["dog/c.png"] == Region(mask="masks/dog/c.png")
    assert masks["cat/sub/b.png"] is None and all(item.others == () for item in items)


def test_labels_csv_with_two_objects_per_image(tmp_path):
    write_image(tmp_path / "images/x.png")
    write_image(tmp_path / "images/y.png")
    for name in ("x-cat", "x-dog"):
        write_image(tmp_path / f"m/{name}.png", mode="L")
    (tmp_path / "labels.csv").write_text("file,label,mask\nimages/x.png,cat,m/x-cat.png\nimages/x.png,1,m/x-dog.png\nimages/y.png,DOG,\n")
    items = scan_folder(tmp_path, ID2LABEL)
    assert [(item.file, item.label, item.region) for item in items] == [
        ("images/x.png", 0, Region(mask="m/x-cat.png")),
        ("images/x.png", 1, Region(mask="m/x-dog.png")),
        ("images/y.png", 1, None),
    ]
    assert items[0].others == (Region(mask="m/x-dog.png"),) and items[1].others == (Region(mask="m/x-cat.png"),)


def test_csv_files_saved_with_a_byte_order_mark(tmp_path):
    """Spreadsheets save "CSV UTF-8" with a byte-order mark before the header."""
    write_image(tmp_path / "images/x.png")
    (tmp_path / "labels.csv").write_text("file,label\nimages/x.png,dog\n", encoding="utf-8-sig")
    (tmp_path / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\nimages/x.png,1,2,4,5\n", encoding="utf-8-sig")
    (item,) = scan_folder(tmp_path, ID2LABEL)
    assert (item.file, item.label, item.region) == ("images/x.png", 1, Region(boxes=((1.0, 2.0, 4.0, 5.0),)))


def test_unreadable_images_are_errors_naming_them(tmp_path, monkeypatch):
    write_image(tmp_path / "big.png", size=(40, 30))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes((tmp_path / "big.png").read_bytes()[:60])
    assert read_image(tmp_path, "big.png").size == (40, 30)
    for file, message in (("empty.png", "cannot identify image file"), ("cut.png", "")):
        with pytest.raises(UnreadableImageError, match=f"cannot read image '{file}': {message}"):
            read_image(tmp_path, file)
    # a decompression bomb: more than twice PIL's limit of pixels, which PIL refuses
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(
        UnreadableImageError, match=r"cannot read image 'big.png': Image size \(1200 pixels\) exceeds limit .*PIL.Image.MAX_IMAGE_PIXELS"
    ):
        read_image(tmp_path, "big.png")


def test_boxes_csv(tmp_path):
    write_image(tmp_path / "cat/a.png")
    (tmp_path / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\ncat/a.png,1,2,4,5\ncat/a.png,10.5,0,12.2,1\n")
    (item,) = scan_folder(tmp_path, ID2LABEL)
    mask = read_region(tmp_path, item.region, (20, 10))
    expected = np.zeros((10, 20), dtype=bool)
    expected[2:5, 1:4] = True
    expected[0:1, 10:13] = True  # fractional corners widen to whole pixels
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("mode, value", [("L", 3), ("P", 1), ("1", 1), ("RGB", (0, 9, 0)), ("I;16", 300)])
def test_mask_files_mark_non_zero_pixels(tmp_path, mode, value):
    image = Image.new(mode, (6, 4), 0)
    image.putpixel((5, 1), value)
    image.save(tmp_path / "m.png")
    mask = read_region(tmp_path, Region(mask="m.png"), (6, 4))
    assert mask.shape == (4, 6) and mask.sum() == 1 and mask[1, 5]


def write_png16(path: Path, values: np.ndarray) -> None:
    """A 16-bit colour PNG of ``values`` ``(H, W, 3 or 4)`` uint16 (PIL writes 16-bit grey
    PNGs only)."""
    height, width, channels = values.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)  # filter type 0 on each row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16_bit_images_read_as_their_8_bit_originals(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour8.png")
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    wide = grey.astype(np.uint16) * 257  # 0..255 spread over 0..65535, as image editors widen 8 to 16 bits
    Image.fromarray(wide).save(tmp_path / "grey16.png")  # PIL mode I;16
    Image.fromarray(wide).save(tmp_path / "grey16.tif")
    Image.fromarray(wide.astype(">u2")).save(tmp_path / "grey16b.tif")  # I;16B
    Image.fromarray(wide).save(tmp_path / "grey16.ppm")  # a PGM of maxval 65535: PIL mode I
    write_png16(tmp_path / "colour16.png", colour.astype(np.uint16) * 257)
    write_png16(tmp_path / "alpha16.png", np.dstack([colour, np.full((12, 16), 255, np.uint8)]).astype(np.uint16) * 257)
    for file in ("grey16.png", "grey16.tif", "grey16b.tif", "grey16.ppm"):
        np.testing.assert_array_equal(np.asarray(read_image(tmp_path, file)), np.asarray(read_image(tmp_path, "grey8.png")), err_msg=file)
    for file in ("colour16.png", "alpha16.png"):
        np.testing.assert_array_equal(np.asarray(read_image(tmp_path, file)), colour, err_msg=file)
    half = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    half.save(tmp_path / "levels.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path, "levels.png"))[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize(
    "values, kind",
    [(np.array([[0, 70000]], dtype=np.int32), "32-bit integers"), (np.array([[0.0, 0.5]], dtype=np.float32), "floating-point numbers")],
    ids=["int32", "float32"],
)
def test_32_bit_and_floating_point_images_are_refused(tmp_path, values, kind):
    Image.fromarray(values).save(tmp_path / "deep.tif")
    with pytest.raises(UnreadableImageError) as refused:
        read_image(tmp_path, "deep.tif")
    assert str(refused.value) == (
        f"cannot read image 'deep.tif': its pixels are {kind} (PIL mode {'I' if kind[0] == '3' else 'F'}), whose range is unknown; "
        "convert it to an 8- or 16-bit image"
    )


@pytest.mark.parametrize(
    "file, values",
    [
        ("m.png", np.array([[0, 300], [0, 0]], dtype=np.uint16)),
        ("m.tif", np.array([[0, 300], [0, 0]], dtype=">u2")),
        ("m.tif", np.array([[0, 70000], [0, 0]], dtype=np.int32)),
        ("m.tif", np.array([[0, 0.5], [0, 0]], dtype=np.float32)),
    ],
    ids=["16-bit", "16-bit-big-endian", "int32", "float32"],
)
def test_masks_of_any_bit_depth_mark_their_non_zero_values(tmp_path, file, values):
    Image.fromarray(values).save(tmp_path / file)
    np.testing.assert_array_equal(read_region(tmp_path, Region(mask=file), (2, 2)), values != 0)
    several = values.copy()
    several[1, 1] = values[0, 1] + 100  # two objects' values: not merged into one by clipping to 8 bits
    Image.fromarray(several).save(tmp_path / file)
    with pytest.raises(ValueError, match="holds 3 values"):
        read_region(tmp_path, Region(mask=file), (2, 2))


def rotated_for_orientation_6(upright: np.ndarray) -> Image.Image:
    """The pixels a camera stores for the ``upright`` picture when held on its side, with
    the EXIF orientation 6 that tells viewers to turn them 90 degrees clockwise."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright)))  # counter-clockwise
    stored.getexif()[0x0112] = 6  # Orientation
    return stored


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_images_and_masks_are_read_upright_by_their_exif_orientation(tmp_path, suffix):
    upright = np.zeros((30, 20), dtype=bool)  # portrait: 20 px wide, 30 px high
    upright[2:8, 3:15] = True  # a bar near the top
    picture = np.repeat(upright[:, :, None] * np.uint8(255), 3, axis=2)
    stored = rotated_for_orientation_6(picture)
    stored.save(tmp_path / f"photo{suffix}", exif=stored.getexif(), quality=95)
    image = read_image(tmp_path, f"photo{suffix}")
    assert image.size == (20, 30)
    np.testing.assert_array_equal(np.asarray(image)[..., 0] > 127, upright)
    # a mask drawn over the photo as viewers show it has no orientation of its own
    Image.fromarray(upright.astype(np.uint8) * 255).save(tmp_path / "drawn.png")
    np.testing.assert_array_equal(read_region(tmp_path, Region(mask="drawn.png"), image.size), upright)
    # one saved from the camera's pixels keeps their orientation, and is read upright too
    mask = rotated_for_orientation_6(upright.astype(np.uint8))
    mask.save(tmp_path / "kept.png", exif=mask.getexif())
    np.testing.assert_array_equal(read_region(tmp_path, Region(mask="kept.png"), image.size), upright)


@pytest.mark.parametrize(
    "files, csvs, message",
    [
        ({"bird/a.png"}, {}, "'bird' is not a class of the model"),
        (set(), {}, "holds no images"),
        ({"cat/a.png", "masks/cat/other.png"}, {}, "holds no mask of any image"),
        ({"a.png"}, {"labels.csv": "file,label\na.png,cat\na.png,cat\n"}, "listed twice"),
        ({"a.png"}, {"labels.csv": "file,class\na.png,cat\n"}, "needs the columns file,label"),
        ({"a.png"}, {"labels.csv": "file,label\nb.png,cat\n"}, "names 'b.png', which is not a file"),
        ({"a.png"}, {"labels.csv": "file,label\n../a.png,cat\n"}, "must be a path relative to the data folder"),
        ({"a.png", "masks/a.png"}, {"labels.csv": "file,label\na.png,cat\na.png,dog\n"}, "add a mask column"),
        ({"cat/a.png"}, {"boxes.csv": "file,x_min,y_min,x_max,y_max\ncat/a.png,5,0,2,3\n"}, "x_min < x_max"),
        ({"cat/a.png", "masks/cat/a.png"}, {"boxes.csv": "file,x_min,y_min,x_max,y_max\ncat/a.png,0,0,2,3\n"}, "both a mask and boxes"),
        (
            {"cat/a.png"},
            {"boxes.csv": "file,x_min,y_min,x_max,y_max\ncat/a.png,0,0,inf,3\n"},
            "boxes.csv row 2: x_max is 'inf'; box corners must be finite",
        ),
        (
            {"cat/a.png"},
            {"boxes.csv": "file,x_min,y_min,x_max,y_max\ncat/a.png,0,0,2,1e400\n"},
            "boxes.csv row 2: y_max is '1e400'; box corners must be finite",
        ),
        (
            {"cat/a.png"},
            {"boxes.csv": "file,x_min,y_min,x_max,y_max\ncat/a.png,nan,0,2,3\n"},
            "boxes.csv row 2: x_min is 'nan'; box corners must be finite",
        ),
        ({"cat/x.png", "cat/x.jpg", "masks/cat/x.png"}, {}, "'masks/cat/x.png' mirrors two images, 'cat/x.jpg' and 'cat/x.png'"),
    ],
)
def test_layout_errors_say_what_to_change(tmp_path, files, csvs, message):
    for file in files:
        write_image(tmp_path / file)
    for name, text in csvs.items():
        (tmp_path / name).write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        scan_folder(tmp_path, ID2LABEL)


@pytest.mark.parametrize("listed", [False, True], ids=["class-folders", "labels-csv"])
def test_entries_named_like_images_that_are_no_files_are_unreadable_images(tmp_path, listed):
    write_image(tmp_path / "cat/a.png")
    (tmp_path / "cat/folder.png").mkdir()
    (tmp_path / "cat/loop.png").symlink_to("loop.png")
    (tmp_path / "cat/dangling.png").symlink_to("gone.png")
    if listed:
        names = ["a.png", "dangling.png", "folder.png", "loop.png"]
        (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"cat/{name},cat\n" for name in names))
    items = scan_folder(tmp_path, ID2LABEL)
    assert [item.file for item in items] == ["cat/a.png", "cat/dangling.png", "cat/folder.png", "cat/loop.png"]
    assert read_image(tmp_path, "cat/a.png").size == (20, 10)
    for file, why in [
        ("cat/folder.png", "is a folder, not an image file"),
        ("cat/loop.png", "is a symbolic link loop, which cannot be resolved"),
        ("cat/dangling.png", "is a symbolic link to 'gone.png', which does not exist"),
    ]:
        with pytest.raises(UnreadableImageError, match=re.escape(f"cannot read image {file!r}: it {why}")):
            read_image(tmp_path, file)


def link(path: Path, target: Path) -> None:
    """A symbolic link at ``path`` to ``target``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda data, out: link(data / "cat/b.png", out / "b.png"), "image: 'cat/b.png'"),
        (lambda data, out: link(data / "dog", out), "image: 'dog/b.png'"),
        (lambda data, out: link(data / "masks/cat/a.png", out / "b.png"), "mask: 'masks/cat/a.png'"),
        (
            lambda data, out: (link(data / "x.png", out / "b.png"), (data / "labels.csv").write_text("file,label\nx.png,cat\n")),
            "labels.csv: 'x.png'",
        ),
        (
            lambda data, out: (
                link(data / "m.png", out / "b.png"),
                (data / "labels.csv").write_text("file,label,mask\ncat/a.png,cat,m.png\n"),
            ),
            "labels.csv: 'm.png'",
        ),
        (
            lambda data, out: (
                link(data / "labels.csv", out / "labels.csv"),
                (out / "labels.csv").write_text("file,label\ncat/a.png,cat\n"),
            ),
            "CSV file: 'labels.csv'",
        ),
        (
            lambda data, out: (
                link(data / "boxes.csv", out / "boxes.csv"),
                (out / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\ncat/a.png,0,0,1,1\n"),
            ),
            "CSV file: 'boxes.csv'",
        ),
    ],
    ids=["image", "class-folder", "mirrored-mask", "labels-csv-file", "labels-csv-mask", "labels-csv", "boxes-csv"],
)
def test_symbolic_links_out_of_the_folder_are_refused_unless_followed(tmp_path, make, message):
    data, out = tmp_path / "data", tmp_path / "outside"
    write_image(data / "cat/a.png")
    write_image(out / "b.png", mode="L")
    make(data, out)
    refused = f"{message} leads out of the data folder through a symbolic link (to '{out}/"
    with pytest.raises(ValueError, match=re.escape(refused) + r".*'\); pass --follow-links \(follow_links=True\) to read it"):
        scan_folder(data, ID2LABEL)
    assert scan_folder(data, ID2LABEL, follow_links=True)


def test_a_link_out_is_refused_as_a_dotdot_path_to_the_same_file_and_a_link_within_is_read(tmp_path):
    data = tmp_path / "data"
    write_image(data / "cat/a.png")
    write_image(tmp_path / "b.png")
    link(data / "cat/b.png", tmp_path / "b.png")
    link(data / "cat/c.png", data / "cat/a.png")  # within the folder
    for named in ("../b.png", "cat/b.png"):
        (data / "labels.csv").write_text(f"file,label\n{named},cat\ncat/c.png,cat\n")
        with pytest.raises(ValueError, match=f"labels.csv: '{re.escape(named)}' (must be a path relative to|leads out of) the data folder"):
            scan_folder(data, ID2LABEL)
    assert [item.file for item in scan_folder(data, ID2LABEL, follow_links=True)] == ["cat/b.png", "cat/c.png"]
    (data / "labels.csv").unlink()
    (data / "cat/b.png").unlink()
    link(data / "cat/sub", data / "cat")  # a folder linked within the folder is not scanned twice
    assert [item.file for item in scan_folder(data, ID2LABEL)] == ["cat/a.png", "cat/c.png"]


def test_a_mask_of_another_size_is_refused(tmp_path):
    write_image(tmp_path / "m.png", size=(5, 5), mode="L")
    with pytest.raises(ValueError, match="mask 'm.png' is 5x5 px but its image is 20x10 px"):
        read_region(tmp_path, Region(mask="m.png"), (20, 10))


@pytest.mark.parametrize("values", [(0, 128, 255), (0, 1, 2)], ids=["anti-aliased", "class-indices"])
def test_a_mask_of_several_objects_values_is_refused(tmp_path, values):
    Image.fromarray(np.array([values, values], dtype=np.uint8)).save(tmp_path / "m.png")
    shown = ", ".join(map(str, values))
    with pytest.raises(ValueError, match=f"mask 'm.png' holds 3 values \\({shown}\\); a mask holds 0 for the background and one value"):
        read_region(tmp_path, Region(mask="m.png"), (3, 2))


def test_a_box_wholly_outside_its_image_is_refused_and_one_partly_outside_is_cut(tmp_path):
    write_image(tmp_path / "cat/a.png")  # 20 x 10 px
    (tmp_path / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\ncat/a.png,15,5,30,40\ncat/a.png,2,10,4,12\n")
    (item,) = scan_folder(tmp_path, ID2LABEL)
    with pytest.raises(ValueError, match=r"boxes.csv row 3: the box \(2.0, 10.0, 4.0, 12.0\) lies wholly outside its 20x10 px image"):
        read_region(tmp_path, item.region, (20, 10))
    expected = np.zeros((10, 20), dtype=bool)
    expected[5:, 15:] = True
    np.testing.assert_array_equal(read_region(tmp_path, Region(boxes=item.region.boxes[:1]), (20, 10)), expected)


def test_exported_scenes_read_back_as_the_scenes(fake_dir, tmp_path):
    from captum_gmar.evaluation.data import SceneTasks

    scenes = make_scenes(6, "test", seed=2, data_dir=fake_dir)
    names = [f"class {c}" if c != 3 else "a/b" for c in range(10)]
    written = export_scenes(scenes, tmp_path, names)
    items = scan_folder(tmp_path, dict(enumerate(names)))
    assert written == len(items) == int(scenes.num_items.sum())
    tasks = SceneTasks(scenes)
    by_key = {(int(item.file.split("scene")[1][:5]), item.label): item for item in items}
    for i in range(len(tasks)):
        task = tasks[i]
        item = by_key[(task["scene"], task["label"])]
        image = np.asarray(Image.open(tmp_path / item.file))
        np.testing.assert_array_equal(image, scenes.images[task["scene"]])
        np.testing.assert_array_equal(read_region(tmp_path, item.region, (64, 64)), task["mask"].numpy())


def test_a_results_folder_inside_the_data_folder_is_left_out_of_the_scan(tmp_path):
    for file in ("cat/a.png", "dog/b.png", "cat/maps/overlays/000000-0-rollout.png", "maps/overlays/000001-1-rollout.png"):
        write_image(tmp_path / file)
    for results in ("cat/maps", "maps"):  # --out inside the data, as a class folder and within one
        (tmp_path / results / ".captum-gmar-output.json").write_text('{"files": ["overlays"]}')
    assert scan_images(tmp_path) == ["cat/a.png", "dog/b.png"]
    assert [item.file for item in scan_folder(tmp_path, ID2LABEL)] == ["cat/a.png", "dog/b.png"]
