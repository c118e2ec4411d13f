"""Moving MNIST: clips of bouncing MNIST digits, built on the fly from the MNIST files on disk.

Srivastava, Mansimov & Salakhutdinov 2015, "Unsupervised Learning of Video Representations using
LSTMs", and the generator most papers copy (their BouncingMNISTDataHandler): `digits` 28 px digits
on a 64 px canvas, `frames` frames. For each digit of a clip, drawn once:

    (x, y) ~ U[0, 1]²,  θ ~ U[0, 2π),  v = (cos θ, sin θ)          (start and direction)
    every frame, first move then record:
        p ← p + STEP·v;   p < 0 → p = 0, v ← −v;   p > 1 → p = 1, v ← −v    (per axis: reflection)
        top-left corner in px = ⌊(64 − 28)·p⌋                            (0 … 36)
    frame = max over the clip's digits of the digits pasted at their corners   (overlaps merge by max)

STEP = 0.1 of the 36 px range, so every digit moves 3.6 px per frame at 64 px (1.8 at 32 px) and
bounces off the canvas edges. Smaller `image_size` (32, 16, 8) area-averages the 64 px frames.

Splits: "train" clips take their digits from MNIST's 60,000 training images, "test" clips from its
10,000 test images, so no digit image is in both. Clip i of a split is a pure function of
(dataset.seed, split, i): its digits, starts and directions are row i of a table drawn once from a
generator seeded with derived_seed("moving_mnist", seed, split, clips) (genlab/data/batches.py), the
same on every machine; frames are rendered from that table when a batch asks for them (no
multi-GB file), uint8 end to end. The test split is the field's fixed 10,000 clips; the train split
has TRAIN_CLIPS clips (an epoch order over them, as for any dataset).

Items are clips: `image_shape` is (frames, 1, S, S) and `images(index)` returns N×T×1×S×S uint8
(the contract's shape of a clip dataset, genlab/data/base.py). Labels are 0 (unlabelled clips);
`digit_labels(index)` gives each clip's digit classes, for measures of identity.

Objects (`objects`, for the clip metrics of genlab/metrics/video.py): `digits` per frame, each in a
box of 28·S/64 px (14 at 32 px) in which MNIST centres the digit's centre of mass (LeCun et al.'s
preprocessing: the 20 px digit placed by its centre of mass in the 28 px image), named by a
classifier trained on dataset=mnist (configs/dataset/mnist.yaml, read from the same root).
"""

from __future__ import annotations

import functools
import math

import torch

from genlab.config.checks import ConfigError, require
from genlab.data.base import Dataset, Objects, require_files_keys
from genlab.data.batches import ImageData, derived_seed

CANVAS = 64                   # px, the generator's canvas
DIGIT = 28                    # px, MNIST's digits
RANGE = CANVAS - DIGIT        # 36 px of travel per axis
STEP = 0.1                    # of RANGE per frame (Srivastava et al.'s step_length)
TRAIN_CLIPS = 1_000_000
TEST_CLIPS = 10_000           # the field's fixed test set size
IMAGE_SIZES = (8, 16, 32, 64)
MAX_DIGITS = 3                # Srivastava et al. used 1-3 digits; more crowd a 64 px canvas
MAX_FRAMES = 100


def trajectories(start: torch.Tensor, theta: torch.Tensor, frames: int) -> torch.Tensor:
    """Top-left corners in px (…, frames, 2) as int64, of digits starting at `start` (…, 2) in
    [0, 1]² with directions `theta` (…), moving STEP per frame and reflecting at 0 and 1."""
    p = start.double().clone()
    v = torch.stack([torch.cos(theta), torch.sin(theta)], -1).double()
    corners = []
    for _ in range(frames):
        p = p + STEP * v
        low, high = p <= 0, p >= 1
        v = torch.where(low | high, -v, v)
        p = p.clamp(0, 1)
        corners.append((RANGE * p).floor().long())
    return torch.stack(corners, -2)


def paste(digits: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Frames (N, T, CANVAS, CANVAS) uint8: the digits (N, D, 28, 28) at corners (N, D, T, 2)
    (x = column, y = row), merged by max."""
    n, d, t = corners.shape[:3]
    pixels = torch.arange(CANVAS)
    rows = pixels[None, None, None, :] - corners[..., 1, None]    # (N, D, T, 64): digit row read by canvas row
    cols = pixels[None, None, None, :] - corners[..., 0, None]
    row_ok, col_ok = (rows >= 0) & (rows < DIGIT), (cols >= 0) & (cols < DIGIT)
    rows, cols = rows.clamp(0, DIGIT - 1), cols.clamp(0, DIGIT - 1)
    which = torch.arange(n * d).view(n, d, 1, 1, 1)
    flat = digits.reshape(n * d, DIGIT, DIGIT)
    layers = flat[which, rows[..., :, None], cols[..., None, :]]   # (N, D, T, 64, 64)
    layers = layers * (row_ok[..., :, None] & col_ok[..., None, :])
    return layers.amax(1)


class MovingMNISTClips(ImageData):
    """One split's clips, rendered from the clip table when asked for (see the module docstring)."""

    num_classes = 1
    class_names = ("clip",)

    def __init__(self, digit_images: torch.Tensor, digit_labels: torch.Tensor, clips: int, frames: int, digits: int,
                 image_size: int, seed: int, split: str):
        self.digit_images, self.digit_label_table = digit_images, digit_labels  # (M, 28, 28) uint8, (M,)
        self.num_images, self.frames, self.image_size = clips, frames, image_size
        self.image_shape = (frames, 1, image_size, image_size)
        g = torch.Generator().manual_seed(derived_seed("moving_mnist", seed, split, clips))
        self.which = torch.randint(len(digit_images), (clips, digits), generator=g)
        self.start = torch.rand(clips, digits, 2, generator=g, dtype=torch.float64)
        self.theta = torch.rand(clips, digits, generator=g, dtype=torch.float64) * (2 * math.pi)

    def corners(self, index: torch.Tensor) -> torch.Tensor:
        """Top-left corners in 64 px canvas units (N, digits, frames, 2) of the clips at `index`."""
        index = index.cpu()
        return trajectories(self.start[index], self.theta[index], self.frames)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        cpu = index.cpu()
        frames = paste(self.digit_images[self.which[cpu]], self.corners(cpu))
        factor = CANVAS // self.image_size
        if factor > 1:
            frames = torch.nn.functional.avg_pool2d(frames.float(), factor).round_().to(torch.uint8)
        return frames[:, :, None].to(index.device)

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(index), dtype=torch.long, device=index.device)

    def digit_labels(self, index: torch.Tensor) -> torch.Tensor:
        """The MNIST classes (N, digits) of each clip's digits."""
        return self.digit_label_table[self.which[index.cpu()]]

    def digit_indices(self, index: torch.Tensor) -> torch.Tensor:
        """Which MNIST images of the split (N, digits) each clip shows."""
        return self.which[index.cpu()]


@functools.lru_cache(maxsize=4)
def _mnist_digits(root: str, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from genlab.data.mnist import NATIVE_SIZE, load_mnist

    data = load_mnist("mnist", root, split, download, NATIVE_SIZE)
    everything = torch.arange(data.num_images)
    return data.images(everything)[:, 0], data.labels(everything)


class MovingMNIST(Dataset):
    """The contract (genlab/data/base.py) for Moving MNIST: configs/dataset/moving_mnist.yaml."""

    binarizable = True  # grey levels are ink probabilities, as in MNIST; static is refused in validate
    provides = frozenset({"objects"})

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int, int]:
        return (dataset["frames"], 1, dataset["image_size"], dataset["image_size"])

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        return 1

    @classmethod
    def load(cls, dataset: dict) -> MovingMNISTClips:
        split = dataset["split"]
        digit_images, digit_labels = _mnist_digits(dataset["root"], split, dataset["download"])
        clips = TEST_CLIPS if split == "test" else TRAIN_CLIPS
        return MovingMNISTClips(digit_images, digit_labels, clips, dataset["frames"], dataset["digits"],
                                dataset["image_size"], dataset["seed"], split)

    @classmethod
    def objects(cls, dataset: dict) -> Objects:
        from pathlib import Path

        from omegaconf import OmegaConf

        from genlab.config.compose import config_dir

        still = OmegaConf.load(Path(config_dir()) / "dataset" / "mnist.yaml")
        still.merge_with({"root": dataset["root"], "download": dataset["download"], "split": "train", "binarize": "none"})
        return Objects(dataset["digits"], DIGIT * dataset["image_size"] / CANVAS, OmegaConf.to_container(still, resolve=True))

    @classmethod
    def validate(cls, cfg) -> None:
        require_files_keys(cfg, ("root",), ("train", "test"))
        size = cfg.dataset.image_size
        if size not in IMAGE_SIZES:
            raise ConfigError(f"dataset.image_size={size!r} is not allowed for moving_mnist: choose 8, 16, 32 or 64 "
                              f"(the {CANVAS} px canvas area-averaged)")
        require(cfg, "dataset.frames", "int", low=1, high=MAX_FRAMES)
        require(cfg, "dataset.digits", "int", low=1, high=MAX_DIGITS)
        require(cfg, "dataset.seed", "int", low=0)
        if cfg.dataset.binarize == "static":
            raise ConfigError(f"dataset.binarize=static is not allowed for moving_mnist: its {TRAIN_CLIPS:,} clips are "
                              "rendered when asked for, not held; use dataset.binarize=dynamic or none")
