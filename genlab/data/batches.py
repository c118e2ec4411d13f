"""The one batch pipeline every dataset goes through.

A dataset is images looked up by index (uint8, N×C×H×W) plus integer labels. Training draws index
batches from a fresh permutation per epoch (seeded by the run seed and the epoch number, so the
position in the epoch is just two integers and resumes exactly), converts each batch to float in
[0, 1] on the training device, and never touches PIL or DataLoader workers.

Binarization draws x ~ Bernoulli(v/255) for every uint8 pixel v, as u < v with u uniform on
{0, …, 254}: P(u < v) = v/255 exactly, with no float rounding. "static" binarization draws once from
the run seed when the dataset is built (Salakhutdinov & Murray 2008; the fixed draw of Larochelle &
Murray 2011); "dynamic" draws afresh for every batch (as in Burda et al. 2016, "Importance Weighted
Autoencoders"), from a generator seeded by (seed, epoch, batch in epoch): the draw is a function of
the batch's position, so resuming needs no generator state, only `ShuffledBatches.state_dict()`.

Several processes (hardware=ddp, see genlab/training/distributed.py): each rank takes its rows of every
global batch of the same order, and the dynamic binarization of a shard uses the same draws as
those rows of the whole batch, so the ranks' shards together are exactly the single-process batch.
Each epoch's order is moved to the device the images are gathered on once per epoch, not once per
batch (a host-to-GPU copy waits for the GPU).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import torch

from genlab.errors import UserError

log = logging.getLogger("genlab")


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

    @property
    def device(self) -> torch.device:
        return self._images.device

    @property
    def nbytes(self) -> int:
        return self._images.nbytes + self._labels.nbytes

    def to(self, device: torch.device) -> TensorData:
        self._images, self._labels = self._images.to(device), self._labels.to(device)
        return self

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return self._images[index.to(self._images.device)]

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return self._labels[index.to(self._labels.device)]


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


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one run: a batch carries it as its shard, so it lives
    here, beside the batches; genlab/training/distributed.py starts the ranks and names this process's."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # which GPU of this node

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files."""
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch of `batch` images."""
        per_rank = batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


@dataclass
class Batch:
    images: torch.Tensor  # float32 in [0, 1], N×C×H×W, on the training device
    labels: torch.Tensor  # int64, N
    shard: World = World()  # the rows of the global batch these are (hardware=ddp)

    def noise(self, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, I) noise of `shape` (shape[0] = this shard's images) on the batch's device, from
        torch's global RNG: the whole global batch's noise is drawn and this shard's rows kept,
        so every rank's RNG stays in step with a single-process run (genlab/training/distributed.py)."""
        if self.shard.size == 1:
            return torch.randn(shape, device=self.images.device, dtype=dtype)
        everything = torch.randn((shape[0] * self.shard.size, *shape[1:]), device=self.images.device, dtype=dtype)
        return everything[self.shard.rows(everything.shape[0])]


def derived_seed(*key: int | str) -> int:
    """A 64-bit generator seed from a key such as ("dynamic binarization", seed, epoch, batch), via BLAKE2b.

    Distinct keys give unrelated seeds, so streams for different purposes never share draws.
    """
    digest = hashlib.blake2b("/".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def binarize(images: torch.Tensor, generator: torch.Generator, rows: slice = slice(None),
             batch: int | None = None) -> torch.Tensor:
    """One Bernoulli draw per uint8 pixel v: 255 with probability v/255, else 0 (uint8 out).

    `images` may be `rows` of a batch of `batch` images: the draws are then those rows of the
    whole batch's draws."""
    shape = (batch if batch is not None else images.shape[0], *images.shape[1:])
    u = torch.randint(0, 255, shape, generator=generator, dtype=torch.uint8, device=images.device)[rows]
    return (u < images).to(torch.uint8).mul_(255)


def binarize_static(data: TensorData, seed: int) -> TensorData:
    """The dataset with one fixed Bernoulli draw from `seed` (the same seed gives the same images)."""
    everything = torch.arange(data.num_images)
    generator = torch.Generator().manual_seed(derived_seed("static binarization", seed))
    return TensorData(binarize(data.images(everything), generator), data.labels(everything), data.class_names)


def to_batch(data: ImageData, index: torch.Tensor, device: torch.device,
             binarize_with: torch.Generator | None = None, rows: slice = slice(None), batch: int | None = None,
             shard: World = World()) -> Batch:
    """The images at `index` on `device` as float in [0, 1]; Bernoulli-binarized when given a
    generator (as `rows` of a batch of `batch` images, see `binarize`)."""
    images = data.images(index).to(device, non_blocking=True)
    if binarize_with is not None:
        images = binarize(images, binarize_with, rows, batch)
    return Batch(images.float().div_(255), data.labels(index).to(device, non_blocking=True), shard)


def on_device(data: ImageData, device: torch.device) -> ImageData:
    """Move a TensorData to a CUDA device when it takes at most half its free memory (the rest is
    the model's); otherwise batches are gathered in host memory and copied per step."""
    if not isinstance(data, TensorData) or device.type != "cuda":
        return data
    free_bytes, _ = torch.cuda.mem_get_info(device)
    if data.nbytes <= free_bytes // 2:
        log.info(f"dataset ({data.nbytes / 2**20:,.0f} MiB) moved to {device}")
        return data.to(device)
    log.info(f"dataset ({data.nbytes / 2**20:,.0f} MiB) stays in host memory: more than half of "
             f"{device}'s {free_bytes / 2**20:,.0f} MiB free")
    return data


class ShuffledBatches:
    """Index batches of a fresh permutation per epoch; drops the last incomplete batch.

    The permutation of epoch e is randperm(num_images) from a generator seeded with
    seed·1,000,003 + e, so `state_dict()` is just (epoch, batch_in_epoch).
    """

    def __init__(self, num_images: int, batch_size: int, seed: int, device: torch.device = torch.device("cpu")):
        if batch_size > num_images:
            raise UserError(f"trainer.batch_size={batch_size} exceeds the dataset's {num_images:,} images: "
                            "use a smaller trainer.batch_size")
        self.num_images, self.batch_size, self.seed, self.device = num_images, batch_size, seed, device
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
            self._order = self._epoch_order().to(self.device)
        start = self.batch_in_epoch * self.batch_size
        self.batch_in_epoch += 1
        return self._order[start : start + self.batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch, self._order = state["epoch"], state["batch_in_epoch"], None


class Batches:
    """The training batches of one run: a ShuffledBatches order, gathered on the device as float in
    [0, 1], with a fresh Bernoulli draw per batch when `dynamic_binarize` (see the module docstring);
    with a `shard` (a World), that rank's rows of each batch of `batch_size` images.

    `state_dict()` is the order's (epoch, batch_in_epoch): the only state the stream has.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, device: torch.device, dynamic_binarize: bool,
                 shard: World | None = None):
        shard = shard or World()
        if batch_size % shard.size:
            raise UserError(f"trainer.batch_size={batch_size} does not split evenly over {shard.size} processes: "
                            f"use a multiple of {shard.size} (it is the global batch)")
        self.data, self.seed, self.device, self.dynamic_binarize = data, seed, device, dynamic_binarize
        self.shard, self.rows = shard, shard.rows(batch_size)
        # Where the images are gathered: a TensorData's device, else (rendered data) the training device.
        self.order = ShuffledBatches(data.num_images, batch_size, seed, getattr(data, "device", device))

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Batch:
        index = self.order.next_index()
        generator = None
        if self.dynamic_binarize:
            # next_index has just advanced batch_in_epoch past the batch it returned.
            key = derived_seed("dynamic binarization", self.seed, self.order.epoch, self.order.batch_in_epoch - 1)
            generator = torch.Generator(self.device).manual_seed(key)
        return to_batch(self.data, index[self.rows], self.device, generator, self.rows, len(index), self.shard)

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)
