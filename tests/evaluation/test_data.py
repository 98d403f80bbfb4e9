"""Evaluation data sets: masks follow their images through the image processor, folders
and saved Hugging Face data sets read as explanation tasks, batches stack them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from PIL import Image

from captum_gmar.errors import UnreadableImageError
from captum_gmar.evaluation.data import (
    HubDatasetTasks,
    ImageFolderTasks,
    SceneTasks,
    collate,
    open_dataset,
    select,
)
from captum_gmar.imagedata.processing import processor_options, transform_mask

ID2LABEL = {0: "cat", 1: "dog"}

#: processors with each kind of geometry: resize to a size; resize then center-crop;
#: shortest edge then crop (DINOv2's); ConvNeXt's crop_pct; none (the reference model's)
PROCESSORS = {
    "resize": lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32}),
    "resize-crop": lambda: transformers.DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}),
    "shortest-edge-crop": lambda: transformers.BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}),
    "crop-pct": lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.75),
    "no-resize": lambda: transformers.ViTImageProcessor(do_resize=False),
}


def scene_with_object(width: int = 90, height: int = 60) -> tuple[Image.Image, np.ndarray]:
    """A black image with a white rectangle near its right edge, and the rectangle's mask."""
    mask = np.zeros((height, width), dtype=bool)
    mask[10:40, 62:84] = True
    return Image.fromarray(np.repeat(mask[:, :, None] * np.uint8(255), 3, axis=2)), mask


@pytest.mark.parametrize("kind", PROCESSORS)
def test_masks_take_the_geometry_of_their_images(kind):
    processor = PROCESSORS[kind]()
    options = processor_options(processor, 32)
    image, mask = scene_with_object()
    pixels = processor(images=image, return_tensors="pt", **options)["pixel_values"][0, 0]
    moved = transform_mask(processor, mask, options)
    assert moved.dtype == torch.bool and moved.shape == pixels.shape == (32, 32)
    bright = pixels > pixels.min() + (pixels.max() - pixels.min()) / 2  # the object, as the model sees it
    union = (moved | bright).sum()
    assert (moved & bright).sum() / union > 0.85, kind  # bilinear edges aside, the same pixels
    if kind != "resize":  # a plain resize of the mask misses the crop (sanity check of the test)
        naive = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(32, 32), mode="nearest")[0, 0] > 0
        assert (naive & bright).sum() / (naive | bright).sum() < 0.85, kind


def test_processor_options_resize_only_when_the_processor_does_not():
    assert processor_options(PROCESSORS["resize"](), 64) == {}
    assert processor_options(PROCESSORS["no-resize"](), (48, 64)) == {
        "do_resize": True,
        "size": {"height": 48, "width": 64},
    }


def test_select_is_a_seeded_shuffle_whose_prefixes_agree():
    assert sorted(select(10, None, seed=1)) == list(range(10))
    assert list(select(10, 4, seed=1)) == list(select(10, 7, seed=1)[:4])
    assert list(select(10, None, seed=1)) != list(select(10, None, seed=2))


@pytest.fixture
def folder(tmp_path):
    """Five images of two classes and sizes, masks for three of them."""
    rng = np.random.default_rng(0)
    for i, (label, size) in enumerate([("cat", (40, 30)), ("cat", (32, 32)), ("dog", (50, 50)), ("dog", (33, 20)), ("dog", (32, 32))]):
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
        if i < 3:
            (tmp_path / "masks" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((size[1], size[0])) > 0.5).astype(np.uint8)).save(tmp_path / "masks" / label / f"{i}.png")
    return tmp_path


def test_image_folder_items(folder):
    processor = PROCESSORS["resize"]()
    data = ImageFolderTasks(folder, processor, ID2LABEL, 32, seed=3)
    assert len(data) == 5 and data.has_masks and data.image_mean == processor.image_mean
    items = [data[i] for i in range(5)]
    assert sorted(item["file"] for item in items) == ["cat/0.png", "cat/1.png", "dog/2.png", "dog/3.png", "dog/4.png"]
    for item in items:
        assert item["pixel_values"].shape == (3, 32, 32) and item["label"] == (0 if item["file"].startswith("cat") else 1)
        assert (item["mask"] is not None) == (item["file"][4] in "012") and item["other_mask"] is None
    batch = collate(items)
    assert batch.pixel_values.shape == (5, 3, 32, 32) and batch.has_mask.sum() == 3 and not batch.has_other.any()
    assert not batch.masks[~batch.has_mask].any() and batch.info[0] == {"file": items[0]["file"]}
    # the same seed and data give the same order and fingerprint; a limit keeps a prefix
    again = ImageFolderTasks(folder, processor, ID2LABEL, 32, seed=3)
    assert again.fingerprint == data.fingerprint and again.items == data.items
    assert ImageFolderTasks(folder, processor, ID2LABEL, 32, limit=2, seed=3).items == data.items[:2]


def test_a_photo_with_an_exif_orientation_is_explained_upright_with_the_mask_drawn_on_it(tmp_path):
    """A phone photo stores its pixels on their side with an EXIF orientation; the mask
    drawn on the photo as viewers show it is upright."""
    image, mask = scene_with_object(40, 60)  # portrait
    stored = image.transpose(Image.Transpose.ROTATE_90)  # the pixels on their side
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation: turn them 90 degrees clockwise to show them
    (tmp_path / "cat").mkdir()
    stored.save(tmp_path / "cat" / "photo.jpg", exif=exif, quality=95)
    (tmp_path / "masks" / "cat").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "masks" / "cat" / "photo.png")
    item = ImageFolderTasks(tmp_path, PROCESSORS["no-resize"](), ID2LABEL, (60, 40))[0]  # the image's size: not resized
    assert torch.equal(item["mask"], torch.from_numpy(mask))
    assert torch.equal(item["pixel_values"][0] > 0, item["mask"])  # the white object lies under its mask


def test_a_broken_image_is_an_error_naming_it(folder):
    (folder / "cat" / "0.png").write_bytes((folder / "cat" / "0.png").read_bytes()[:100])
    data = ImageFolderTasks(folder, PROCESSORS["resize"](), ID2LABEL, 32)
    broken = next(i for i in range(len(data)) if data.items[i].file == "cat/0.png")
    with pytest.raises(ValueError, match="cannot read image 'cat/0.png'"):
        data[broken]


def test_unreadable_images_are_skipped_when_asked(folder, monkeypatch):
    (folder / "cat" / "0.png").write_bytes(b"")
    (folder / "dog" / "2.png").write_bytes((folder / "dog" / "2.png").read_bytes()[:300])
    data = open_dataset(folder, PROCESSORS["resize"](), ID2LABEL, 32, skip_unreadable=True)
    items = [data[i] for i in range(len(data))]
    unreadable = {item["file"]: item for item in items if "unreadable" in item}
    assert sorted(unreadable) == ["cat/0.png", "dog/2.png"]
    assert all(
        set(item) == {"unreadable", "file"} and item["unreadable"].startswith(f"cannot read image '{file}'")
        for file, item in unreadable.items()
    )
    batch = collate(items)
    assert len(batch) == 3 and [items[p]["file"] for p in batch.positions] == [info["file"] for info in batch.info]
    assert [(entry["position"], entry["file"], entry["error"]) for entry in batch.unreadable] == [
        (p, item["file"], item["unreadable"]) for p, item in enumerate(items) if "unreadable" in item
    ]
    empty = collate([item for item in items if "unreadable" in item])
    assert len(empty) == 0 and empty.pixel_values.shape[0] == 0 and len(empty.unreadable) == 2
    # a decompression bomb too (more than twice PIL.Image.MAX_IMAGE_PIXELS)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    bomb = next(i for i in range(len(data)) if data.items[i].file == "dog/3.png")  # 33 x 20 px
    assert "Image size (660 pixels) exceeds limit of 600 pixels" in data[bomb]["unreadable"]
    with pytest.raises(UnreadableImageError, match="cannot read image 'dog/3.png': Image size"):
        ImageFolderTasks(folder, PROCESSORS["resize"](), ID2LABEL, 32)[bomb]


def test_boxes_that_cannot_be_scored_are_refused_not_scored_as_empty_masks(folder):
    """A corner that is not finite is refused by the scan, before any image is read (it
    overflowed when its batch was read); a box wholly outside its image when the image is
    read, naming its row."""
    (folder / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\ndog/3.png,0,0,1e400,5\n")
    with pytest.raises(ValueError, match="boxes.csv row 2: x_max is '1e400'; box corners must be finite"):
        open_dataset(folder, PROCESSORS["resize"](), ID2LABEL, 32)
    (folder / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\ndog/3.png,33,0,40,5\n")  # dog/3.png is 33 x 20 px
    data = open_dataset(folder, PROCESSORS["resize"](), ID2LABEL, 32)
    outside = next(i for i in range(len(data)) if data.items[i].file == "dog/3.png")
    with pytest.raises(ValueError, match=r"boxes.csv row 2: the box \(33.0, 0.0, 40.0, 5.0\) lies wholly outside its 33x20 px image"):
        data[outside]


def test_a_symbolic_link_out_of_the_folder_is_read_only_when_followed(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(outside / "x.png")
    (folder / "dog" / "x.png").symlink_to(outside / "x.png")
    with pytest.raises(ValueError, match="image: 'dog/x.png' leads out of the data folder through a symbolic link"):
        open_dataset(folder, PROCESSORS["resize"](), ID2LABEL, 32)
    data = open_dataset(folder, PROCESSORS["resize"](), ID2LABEL, 32, follow_links=True)
    linked = next(i for i in range(len(data)) if data.items[i].file == "dog/x.png")
    assert data[linked]["pixel_values"].shape == (3, 32, 32) and data[linked]["label"] == 1


def test_collate_refuses_images_of_different_sizes():
    items = [{"pixel_values": torch.zeros(3, 8, 8), "label": 0}, {"pixel_values": torch.zeros(3, 8, 9), "label": 1}]
    with pytest.raises(ValueError, match="different sizes"):
        collate(items)
    with pytest.raises(ValueError, match="does not match its image"):
        collate([{"pixel_values": torch.zeros(3, 8, 8), "label": 0, "mask": torch.zeros(4, 4, dtype=torch.bool)}])


@pytest.fixture(scope="module")
def scenes():
    from captum_gmar.imagedata.scenes import make_scenes

    try:
        return make_scenes(6, "test", seed=3)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_scene_tasks_one_per_item(scenes):
    tasks = SceneTasks(scenes)
    assert len(tasks) == int(scenes.num_items.sum())
    for i in range(len(tasks)):
        item = tasks[i]
        scene = item["scene"]
        assert item["label"] in scenes.labels[scene].tolist() and item["mask"].any()
        assert item["two_items"] == (item["other_mask"] is not None) == (scenes.num_items[scene] == 2)
        if item["two_items"]:
            assert not (item["mask"] & item["other_mask"]).any()


def test_scene_tasks_through_a_model_processor(scenes):
    """A model that takes the scenes resized (dinov2-small: 112 px, ImageNet statistics)
    gets them through its processor, and the masks follow the resize pixel for pixel."""
    processor = transformers.ViTImageProcessor(
        size={"height": 112, "width": 112}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    )
    plain, resized = SceneTasks(scenes), SceneTasks(scenes, processor)
    assert resized.image_mean == (0.485, 0.456, 0.406) and plain.image_mean == (0.5, 0.5, 0.5)
    for i in range(len(plain)):
        item = resized[i]
        assert item["pixel_values"].shape == (3, 112, 112) and item["mask"].shape == (112, 112)
        image = np.asarray(Image.fromarray(scenes.images[item["scene"]]).resize((112, 112), Image.BILINEAR), dtype=np.float32)
        expected = (torch.from_numpy(image / 255).permute(2, 0, 1) - torch.tensor(processor.image_mean).view(3, 1, 1)) / torch.tensor(
            processor.image_std
        ).view(3, 1, 1)
        # PIL's bilinear resize as the reference: torchvision's rounds otherwise, by up to 0.035 (one value in 37,632)
        torch.testing.assert_close(item["pixel_values"], expected, atol=0.05 if torchvision_backend(processor) else 0.03, rtol=0)
        nearest = Image.fromarray(plain[i]["mask"].numpy().astype(np.uint8) * 255).resize((112, 112), Image.NEAREST)
        pil_nearest = torch.from_numpy(np.asarray(nearest) > 127)
        if torchvision_backend(processor):  # torchvision rounds nearest-neighbour sampling its own way: edges move by a pixel
            assert (item["mask"] & pil_nearest).sum() / (item["mask"] | pil_nearest).sum() > 0.9
        else:
            assert torch.equal(item["mask"], pil_nearest)
        assert (item["other_mask"] is None) == (plain[i]["other_mask"] is None)


def torchvision_backend(processor) -> bool:
    """Whether ``processor`` resizes with torchvision (transformers 5 with torchvision installed), not PIL."""
    return any(cls.__name__ == "TorchvisionBackend" or cls.__name__.endswith("ImageProcessorFast") for cls in type(processor).__mro__)


def test_saved_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
    masks = [Image.fromarray((rng.random((40, 30)) > 0.5).astype(np.uint8) * 255) for _ in range(3)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"]), "mask": datasets.Image()})
    datasets.Dataset.from_dict({"image": images, "label": [0, 1, 1], "mask": masks}, features=features).save_to_disk(tmp_path / "saved")
    data = open_dataset(tmp_path / "saved", PROCESSORS["resize"](), ID2LABEL, 32, seed=0)
    assert isinstance(data, HubDatasetTasks) and len(data) == 3
    for i in range(3):
        item = data[i]
        assert item["label"] == (1 if item["index"] == 0 else 0)  # ClassLabel names matched to the model's
        expected = transform_mask(data.processor, np.asarray(masks[item["index"]]) != 0, data.options)
        assert torch.equal(item["mask"], expected)
    broken = datasets.Dataset.from_dict(
        {"image": [{"bytes": b"not an image", "path": None}], "label": [0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"])}),
    )
    with pytest.raises(UnreadableImageError, match="cannot read the image of row 0: cannot identify image file"):
        HubDatasetTasks(broken, PROCESSORS["resize"](), ID2LABEL, 32)[0]
    assert HubDatasetTasks(broken, PROCESSORS["resize"](), ID2LABEL, 32, skip_unreadable=True)[0]["index"] == 0
    grey = datasets.Dataset.from_dict(
        {"image": images[:1], "label": [0], "mask": [Image.fromarray(np.arange(1200, dtype=np.uint8).reshape(40, 30))]}, features=features
    )
    with pytest.raises(
        ValueError, match=r"the mask of row 0 holds 256 values \(0, 1, 2, 3, 4, 5, ...\); a mask holds 0 for the background and one value"
    ):
        HubDatasetTasks(grey, PROCESSORS["resize"](), ID2LABEL, 32)[0]
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"label": [0]})}).save_to_disk(tmp_path / "dict")
    with pytest.raises(ValueError, match="DatasetDict"):
        open_dataset(tmp_path / "dict", PROCESSORS["resize"](), ID2LABEL, 32)


def test_a_16_bit_image_of_a_saved_dataset_reads_as_its_8_bit_original(tmp_path):
    datasets = pytest.importorskip("datasets")
    grey = np.random.default_rng(2).integers(0, 256, (40, 30), dtype=np.uint8)
    images = [Image.fromarray(grey), Image.fromarray(grey.astype(np.uint16) * 257)]  # PIL modes L and I;16
    assert images[1].mode == "I;16"
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"])})
    datasets.Dataset.from_dict({"image": images, "label": [0, 0]}, features=features).save_to_disk(tmp_path / "saved")
    data = open_dataset(tmp_path / "saved", PROCESSORS["resize"](), ID2LABEL, 32)
    eight, sixteen = sorted((data[i] for i in range(2)), key=lambda item: item["index"])
    torch.testing.assert_close(sixteen["pixel_values"], eight["pixel_values"])


@pytest.mark.parametrize("kind", PROCESSORS)
def test_a_batch_read_at_once_equals_its_items_read_one_by_one(folder, kind):
    """A DataLoader asks for a batch's items at once (``__getitems__``): one processor call
    where the outputs have one size, the same items as one call each."""
    (folder / "dog" / "3.png").write_bytes(b"")  # unreadable, skipped in place
    data = ImageFolderTasks(folder, PROCESSORS[kind](), ID2LABEL, 32, skip_unreadable=True)
    together = data.__getitems__(list(range(len(data))))
    for index, item in enumerate(together):
        alone = data[index]
        assert item.keys() == alone.keys()
        for key, value in item.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, alone[key]), (key, index)
            else:
                assert value == alone[key]
    assert sum("unreadable" in item for item in together) == 1
    same_size = [i for i in range(len(data)) if data.items[i].file in ("cat/1.png", "dog/4.png")]  # both 32 x 32
    assert [item["pixel_values"].shape for item in data.__getitems__(same_size)] == [data[i]["pixel_values"].shape for i in same_size]


def test_a_missing_image_of_a_saved_dataset_is_one_line_naming_its_row_and_arrays_are_refused_first(tmp_path):
    datasets = pytest.importorskip("datasets")
    picture = Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"])})
    datasets.Dataset.from_dict({"image": [picture, None], "label": [0, 1]}, features=features).save_to_disk(tmp_path / "missing")
    data = open_dataset(tmp_path / "missing", PROCESSORS["resize"](), ID2LABEL, 32, seed=0)
    second = [i for i in range(2) if data.order[i] == 1][0]
    with pytest.raises(UnreadableImageError, match=r"^row 1 has no image \(its 'image' is None\)$"):
        data[second]
    skipping = open_dataset(tmp_path / "missing", PROCESSORS["resize"](), ID2LABEL, 32, seed=0, skip_unreadable=True)
    assert skipping[second] == {"unreadable": "row 1 has no image (its 'image' is None)", "index": 1}
    arrays = datasets.Dataset.from_dict({"image": [np.asarray(picture)], "label": [0]})
    arrays.save_to_disk(tmp_path / "arrays")
    with pytest.raises(ValueError, match=r"^the data set's 'image' column holds List, not images: cast it to images first"):
        open_dataset(tmp_path / "arrays", PROCESSORS["resize"](), ID2LABEL, 32)


def test_a_source_names_the_content_and_label_without_decoding(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    data = ImageFolderTasks(folder, PROCESSORS["resize"](), ID2LABEL, 32)
    before = [data.source(i) for i in range(len(data))]
    assert [source.label for source in before] == [item.label for item in data.items]
    assert len({source.content for source in before}) == len(data) and all(s.content.startswith("sha256:") for s in before)
    (folder / data.items[0].file).write_bytes((folder / data.items[1].file).read_bytes())  # another picture under its name
    assert data.source(0).content == before[1].content and data.source(1) == before[1]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"])})
    picture = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    hub = HubDatasetTasks(
        datasets.Dataset.from_dict({"image": [picture], "label": [1]}, features=features), PROCESSORS["resize"](), ID2LABEL, 32
    )
    assert hub.source(0).content.startswith("dataset:") and hub.source(0).label == 0  # ClassLabel "cat" is the model's class 0
