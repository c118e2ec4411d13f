"""Datasets: every one is an ImageData (uint8 images by index + labels)."""

from __future__ import annotations

from genlab.data.batches import ImageData, binarize_static


def build_dataset(cfg: dict, seed: int) -> ImageData:
    """The dataset named by cfg['name'], from the plain `dataset` config section.

    `seed` is the run's: static binarization draws from it (dynamic binarization is per batch, see
    genlab.data.batches.Batches).
    """
    name = cfg["name"]
    if name == "shapes":
        from genlab.data.shapes import Shapes

        data = Shapes(cfg["image_size"])
    elif name in ("mnist", "fashion_mnist"):
        from genlab.data.mnist import load_mnist

        data = load_mnist(name, cfg["root"], cfg["split"], cfg["download"], cfg["image_size"])
    elif name == "celeba":
        from genlab.data.celeba import load_celeba

        data = load_celeba(cfg["root"], cfg["split"], cfg["download"], cfg["crop"], cfg["image_size"],
                           list(cfg["attributes"]), cfg["cache_dir"])
    else:
        raise ValueError(f"unknown dataset {name!r}")
    if cfg["binarize"] == "static":
        data = binarize_static(data, seed)
    return data


def num_classes(cfg: dict) -> int:
    """The number of classes of the dataset cfg names, without loading it (for config validation)."""
    if cfg["name"] == "shapes":
        from genlab.data.shapes import SHAPE_NAMES

        return len(SHAPE_NAMES)
    if cfg["name"] in ("mnist", "fashion_mnist"):
        return 10
    if cfg["name"] == "celeba":
        return 2 ** len(cfg["attributes"])
    raise ValueError(f"unknown dataset {cfg['name']!r}")


def image_shape(cfg: dict) -> tuple[int, int, int]:
    """(channels, height, width) of the images the dataset cfg names, without loading it."""
    return (3 if cfg["name"] == "celeba" else 1, cfg["image_size"], cfg["image_size"])
