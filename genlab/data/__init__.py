"""Datasets: every one is an ImageData (uint8 images by index + labels)."""

from __future__ import annotations

from genlab.data.batches import ImageData


def build_dataset(cfg: dict) -> ImageData:
    """The dataset named by cfg['name'], from the plain `dataset` config section."""
    if cfg["name"] == "shapes":
        from genlab.data.shapes import Shapes

        return Shapes(cfg["image_size"])
    raise ValueError(f"unknown dataset {cfg['name']!r}")


def num_classes(cfg: dict) -> int:
    """The number of classes of the dataset cfg names, without loading it (for config validation)."""
    if cfg["name"] == "shapes":
        from genlab.data.shapes import SHAPE_NAMES

        return len(SHAPE_NAMES)
    raise ValueError(f"unknown dataset {cfg['name']!r}")
