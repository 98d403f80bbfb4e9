"""Data for the reference model: Fashion-MNIST and cluttered scenes with item masks."""

from .fashion_mnist import CLASS_NAMES, load_fashion_mnist, read_idx, resolve_data_dir
from .scenes import IMAGE_SIZE, Scenes, make_scenes, to_pixel_values

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "Scenes",
    "load_fashion_mnist",
    "make_scenes",
    "read_idx",
    "resolve_data_dir",
    "to_pixel_values",
]
