"""Procedural dSprites: the built-in `shapes` dataset, rendered on demand.

A re-creation of dSprites (Matthey, Higgins, Hassabis & Lerchner 2017, "dSprites: Disentanglement
testing Sprites dataset"): binary 64×64 images of one white shape on black, with five independent
ground-truth factors, in dSprites' order (the last factor varies fastest):

    shape        3   square, ellipse, heart                (also the class label)
    scale        6   linspace(0.5, 1, 6)
    orientation 40   2π·k/40, k = 0…39, i.e. [0, 2π)
    pos_x       32   linspace(0, 1, 32), left → right
    pos_y       32   linspace(0, 1, 32), top → bottom

3·6·40·32·32 = 737,280 images. Index i ↦ factors by mixed-radix decomposition, and every image is a
pure function of its index. The shape's centre sits on the pixel corner (16 + k_x, 16 + k_y) for
position classes k ∈ 0…31 (one pixel per step, as in dSprites' 64 px grid); a pixel whose centre
is p (in units of 32 px, relative to the shape's centre) is on when q = R(−θ)·p / (0.35·scale)
lies inside the unit shape:
    square   max(|q_x|, |q_y|) ≤ 0.8
    ellipse  q_x² + (q_y / 0.5)² ≤ 1
    heart    (X² + Y² − 1)³ − X²·Y³ ≤ 0,  X = 1.15·q_x,  Y = 0.15 − 1.15·q_y   (Taubin's heart curve)
Rendering draws each of the 720 (shape, scale, orientation) sprites once per process and
translates it by indexing, ~1 µs per image. Smaller `image_size` values average-pool the 64 px
rendering (area downsampling).
"""

from __future__ import annotations

import functools
import math

import torch

from genlab.config.checks import ConfigError
from genlab.data.base import Dataset
from genlab.data.batches import ImageData, IndexedSubset

NATIVE_SIZE = 64
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280


def factor_classes(index: torch.Tensor) -> torch.Tensor:
    """Integer factor classes (N, 5) of dataset indices (N,), in FACTOR_NAMES order."""
    classes = []
    for size in reversed(FACTOR_SIZES):
        classes.append(index % size)
        index = index // size
    return torch.stack(classes[::-1], dim=1)


def factor_values(classes: torch.Tensor) -> torch.Tensor:
    """Physical factor values (N, 5): shape id, scale, orientation (radians), pos_x, pos_y."""
    shape, scale, orient, pos_x, pos_y = classes.double().unbind(1)
    return torch.stack(
        [shape, 0.5 + 0.1 * scale, orient * (2 * math.pi / 40), pos_x / 31, pos_y / 31], dim=1
    )


def render(index: torch.Tensor, image_size: int = NATIVE_SIZE) -> torch.Tensor:
    """uint8 images (N, 1, image_size, image_size) in {0…255} for dataset indices (N,)."""
    if NATIVE_SIZE % image_size:
        raise ValueError(f"shapes image_size must divide {NATIVE_SIZE}, got {image_size}")
    classes = factor_classes(index)
    sprite = (classes[:, 0] * 6 + classes[:, 1]) * 40 + classes[:, 2]
    pixels = torch.arange(NATIVE_SIZE, device=index.device)
    # Output pixel r of a shape centred at 16 + k reads sprite pixel r − (16 + k) + 64.
    rows = pixels[None, :, None] + 48 - classes[:, 4, None, None]
    cols = pixels[None, None, :] + 48 - classes[:, 3, None, None]
    images = _sprite_bank(index.device)[sprite[:, None, None], rows, cols][:, None]
    factor = NATIVE_SIZE // image_size
    if factor == 1:
        return images
    return torch.nn.functional.avg_pool2d(images.float(), factor).round_().to(torch.uint8)


@functools.cache
def _sprite_bank(device: torch.device) -> torch.Tensor:
    """uint8 (720, 128, 128): every (shape, scale, orientation), centred at pixel corner (64, 64)."""
    sprite = torch.arange(3 * 6 * 40)
    shape, scale, theta = factor_values(factor_classes(sprite * 32 * 32))[:, :3].float().unbind(1)
    shape, scale, theta = (v[:, None, None] for v in (shape, scale, theta))
    # Pixel centres relative to the sprite centre, in units of half the 64 px image.
    offsets = (torch.arange(2 * NATIVE_SIZE, dtype=torch.float32) + 0.5 - NATIVE_SIZE) / (NATIVE_SIZE / 2)
    dx, dy = offsets[None, None, :], offsets[None, :, None]
    radius = 0.35 * scale
    cos, sin = torch.cos(theta), torch.sin(theta)
    qx = (cos * dx + sin * dy) / radius
    qy = (-sin * dx + cos * dy) / radius
    square = torch.maximum(qx.abs(), qy.abs()) <= 0.8
    ellipse = qx**2 + (qy / 0.5) ** 2 <= 1
    hx, hy = 1.15 * qx, 0.15 - 1.15 * qy
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    on = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))
    return (on.to(torch.uint8) * 255).to(device)


class Shapes(ImageData):
    """The shapes dataset: images rendered from their index on the index's device; label = shape."""

    num_classes = len(SHAPE_NAMES)
    class_names = SHAPE_NAMES

    def __init__(self, image_size: int = NATIVE_SIZE):
        self.image_size = image_size
        self.num_images = NUM_IMAGES
        self.image_shape = (1, image_size, image_size)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return render(index, self.image_size)

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return factor_classes(index)[:, 0]

    def factors(self, index: torch.Tensor) -> torch.Tensor:
        return factor_classes(index)


# Shapes has no splits of its own: every image is a function of its index and models train on all
# of them. Metrics hold out a fixed random TEST_IMAGES of them (a permutation seeded with 0, the same
# on every machine) as its "test" split and call the rest "train"; both overlap a model's training
# data, so on shapes the train-vs-test noise floor measures sampling noise only.
TEST_IMAGES = 10_000
IMAGE_SIZES = (8, 16, 32, 64)


class ShapesDataset(Dataset):
    """The contract (genlab/data/base.py) for the built-in shapes: configs/dataset/shapes.yaml."""

    factor_names = FACTOR_NAMES
    provides = frozenset({"dsprites"})

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int]:
        return (1, dataset["image_size"], dataset["image_size"])

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        return len(SHAPE_NAMES)

    @classmethod
    def load(cls, dataset: dict) -> ImageData:
        return Shapes(dataset["image_size"])

    @classmethod
    def reference(cls, dataset: dict, split: str) -> ImageData:
        shapes = Shapes(dataset["image_size"])
        order = torch.randperm(shapes.num_images, generator=torch.Generator().manual_seed(0))
        return IndexedSubset(shapes, order[:TEST_IMAGES] if split == "test" else order[TEST_IMAGES:])

    @classmethod
    def validate(cls, cfg) -> None:
        size = cfg.dataset.image_size
        if size not in IMAGE_SIZES:
            raise ConfigError(f"dataset.image_size={size!r} is not allowed for shapes: choose 8, 16, 32 or 64")
