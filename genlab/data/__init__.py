"""Datasets: each is a `Dataset` (genlab/data/base.py) named by `dataset._target_` in its YAML. This
module finds one from a config section and applies what is the same for every dataset (the
`binarize` key), and names the datasets only to read checkpoints written before `_target_`."""

from __future__ import annotations

from omegaconf import DictConfig

from genlab.config.checks import ConfigError, require
from genlab.data.base import Dataset
from genlab.data.batches import ImageData, binarize_static
from genlab.errors import UserError
from genlab.config.targets import migrate_section, target_class

# `dataset.name` → class, for the configs of checkpoints (and callers) from before `dataset._target_`.
LEGACY_TARGETS = {"shapes": "genlab.data.shapes.ShapesDataset", "mnist": "genlab.data.mnist.MNIST",
                  "fashion_mnist": "genlab.data.mnist.FashionMNIST", "celeba": "genlab.data.celeba.CelebA"}


def dataset_class(dataset: dict) -> type[Dataset]:
    """The class a config's `dataset` section names with `_target_` (or, before it, with `name`)."""
    target = dataset.get("_target_", LEGACY_TARGETS.get(dataset.get("name")))
    return target_class("dataset", target, Dataset, "genlab.data.shapes.ShapesDataset")


def build_dataset(cfg: dict, seed: int) -> ImageData:
    """The dataset the plain `dataset` config section describes, binarized as it says.

    `seed` is the run's: static binarization draws from it (dynamic binarization is per batch, see
    genlab.data.batches.Batches).
    """
    data = dataset_class(cfg).load(cfg)
    if cfg["binarize"] == "static":
        data = binarize_static(data, seed)
    return data


def num_classes(cfg: dict) -> int:
    """The number of classes of the dataset cfg describes, without loading it (for config validation)."""
    return dataset_class(cfg).num_classes(cfg)


def image_shape(cfg: dict) -> tuple[int, int, int]:
    """(channels, height, width) of the images the dataset cfg describes, without loading it."""
    return tuple(dataset_class(cfg).image_shape(cfg))


def validate_dataset(cfg: DictConfig) -> None:
    """ConfigError for the first bad `dataset.*` value of a composed run: the keys every dataset has,
    then the dataset's own (its `validate`)."""
    from omegaconf import OmegaConf

    try:
        found = dataset_class(OmegaConf.to_container(cfg.dataset))
    except UserError as e:  # a class that cannot be found: one line either way
        raise ConfigError(str(e)) from None
    name = cfg.dataset.name
    require(cfg, "dataset.image_size", "int", low=1)
    binarize = require(cfg, "dataset.binarize", "str", choices=("none", "dynamic", "static"))
    if binarize != "none" and not found.binarizable:
        binarizable = [n for n, t in LEGACY_TARGETS.items() if dataset_class({"_target_": t}).binarizable]
        raise ConfigError(f"dataset.binarize={binarize} is not allowed for {name}: binarization is for the grayscale "
                          f"datasets ({', '.join(binarizable)}); use dataset.binarize=none")
    found.validate(cfg)


def migrate_dataset_config(config: dict) -> None:
    """Bring a checkpoint's dataset section up to this genlab's keys, in place (its dataset's `migrate`)."""
    migrate_section(config, "dataset", LEGACY_TARGETS, dataset_class)
