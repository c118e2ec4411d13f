"""The real images that metrics compare against: a dataset's train and test splits.

MNIST, Fashion-MNIST and CelebA have their own splits (dataset.split). Shapes has none: every image
is a function of its index and models train on all 737,280. genlab holds out a fixed random
`SHAPES_TEST_IMAGES` of them (a permutation seeded with 0, the same on every machine) as shapes'
"test" split and calls the rest "train"; both overlap a model's training data, so on shapes the
train-vs-test noise floor measures sampling noise only. Images come as stored, never binarized.
"""

from __future__ import annotations

import torch

from genlab.data.batches import ImageData

SHAPES_TEST_IMAGES = 10_000


class IndexedSubset(ImageData):
    """The images of `data` at `index`, renumbered 0…len(index)−1 (labels and factors follow)."""

    def __init__(self, data: ImageData, index: torch.Tensor):
        self.data, self.index = data, index
        self.num_images = len(index)
        self.image_shape, self.num_classes, self.class_names = data.image_shape, data.num_classes, data.class_names

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.images(self.index[index])

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.labels(self.index[index])

    def factors(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.factors(self.index[index])


def split_data(dataset: dict, split: str) -> ImageData:
    """The `split` ("train" or "test") of the dataset that the plain `dataset` config section names."""
    if dataset["name"] == "shapes":
        from genlab.data.shapes import Shapes

        shapes = Shapes(dataset["image_size"])
        order = torch.randperm(shapes.num_images, generator=torch.Generator().manual_seed(0))
        return IndexedSubset(shapes, order[:SHAPES_TEST_IMAGES] if split == "test" else order[SHAPES_TEST_IMAGES:])
    from genlab.data import build_dataset

    return build_dataset({**dataset, "split": split, "binarize": "none"}, 0)
