"""A dataset defined outside genlab, to prove the dataset contract is all a dataset needs.

Images: one white bar, `bar_width` pixels wide, on black; class 0 a vertical bar, class 1 a
horizontal one; image i of a split puts its bar at offset i // 2 modulo the room left (a pure
function of the index). The train split holds 512 images, the test split 256 (offsets shifted by
one, so the splits differ), and there are two ground-truth factors (orientation, offset).
"""

from __future__ import annotations

import torch

from genlab.config.checks import ConfigError, require
from genlab.data.base import Dataset
from genlab.data.batches import ImageData

SPLIT_SIZES = {"train": 512, "test": 256}


class BarImages(ImageData):
    class_names = ("vertical", "horizontal")
    num_classes = 2

    def __init__(self, size: int, width: int, split: str):
        self.size, self.width, self.shift = size, width, 0 if split == "train" else 1
        self.num_images = SPLIT_SIZES[split]
        self.image_shape = (1, size, size)

    def factors(self, index: torch.Tensor) -> torch.Tensor:
        return torch.stack([index % 2, (index // 2 + self.shift) % (self.size - self.width + 1)], 1)

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return index % 2

    def images(self, index: torch.Tensor) -> torch.Tensor:
        orientation, offset = self.factors(index).unbind(1)
        pixels = torch.arange(self.size)
        inside = (pixels >= offset[:, None]) & (pixels < offset[:, None] + self.width)  # (N, size)
        rows = torch.where(orientation[:, None, None] == 1, inside[:, :, None], inside[:, None, :])
        return (rows.expand(-1, self.size, self.size) * 255).to(torch.uint8)[:, None]


class Bars(Dataset):
    factor_names = ("orientation", "offset")

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int]:
        return (1, dataset["image_size"], dataset["image_size"])

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        return 2

    @classmethod
    def load(cls, dataset: dict) -> ImageData:
        return BarImages(dataset["image_size"], dataset["bar_width"], dataset["split"])

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "dataset.split", "str", choices=tuple(SPLIT_SIZES))
        width = require(cfg, "dataset.bar_width", "int", low=1)
        if width >= cfg.dataset.image_size:
            raise ConfigError(f"dataset.bar_width={width} is not allowed: expected less than dataset.image_size")
