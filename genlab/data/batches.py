"""The one batch pipeline every dataset goes through.

A dataset is images looked up by index (uint8, N×C×H×W) plus integer labels. Training draws index
batches from a fresh permutation per epoch (seeded by the run seed and the epoch number, so the
position in the epoch is just two integers and resumes exactly), converts each batch to float in
[0, 1] on the training device, and never touches PIL or DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class ImageData:
    """A dataset as the loop sees it. Subclasses set num_images, image_shape, num_classes."""

    num_images: int
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] = ()

    def images(self, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TensorData(ImageData):
    """A dataset held as one uint8 tensor (moved to the training device by `to`)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]):
        self._images, self._labels = images, labels
        self.num_images = images.shape[0]
        self.image_shape = tuple(images.shape[1:])
        self.num_classes = len(class_names)
        self.class_names = class_names

    def to(self, device: torch.device) -> TensorData:
        self._images, self._labels = self._images.to(device), self._labels.to(device)
        return self

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return self._images[index.to(self._images.device)]

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return self._labels[index.to(self._labels.device)]


@dataclass
class Batch:
    images: torch.Tensor  # float32 in [0, 1], N×C×H×W, on the training device
    labels: torch.Tensor  # int64, N


def to_batch(data: ImageData, index: torch.Tensor, device: torch.device) -> Batch:
    index = index.to(device)
    images = data.images(index).to(device, non_blocking=True).float().div_(255)
    return Batch(images, data.labels(index).to(device, non_blocking=True))


class ShuffledBatches:
    """Index batches of a fresh permutation per epoch; drops the last incomplete batch.

    The permutation of epoch e is randperm(num_images) from a generator seeded with
    seed·1,000,003 + e, so `state_dict()` is just (epoch, batch_in_epoch).
    """

    def __init__(self, num_images: int, batch_size: int, seed: int):
        if batch_size > num_images:
            raise ValueError(f"batch size {batch_size} exceeds the dataset's {num_images} images")
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.batches_per_epoch = num_images // batch_size
        self.epoch, self.batch_in_epoch = 0, 0
        self._order: torch.Tensor | None = None

    def _epoch_order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_images, generator=generator)

    def next_index(self) -> torch.Tensor:
        if self.batch_in_epoch == self.batches_per_epoch:
            self.epoch, self.batch_in_epoch, self._order = self.epoch + 1, 0, None
        if self._order is None:
            self._order = self._epoch_order()
        start = self.batch_in_epoch * self.batch_size
        self.batch_in_epoch += 1
        return self._order[start : start + self.batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch, self._order = state["epoch"], state["batch_in_epoch"], None
