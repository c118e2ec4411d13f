"""The one contract between a dataset and the rest of genlab.

Training, `genlab eval`, `genlab explore`, config validation and the metrics use a dataset only
through `Dataset`; none of them names one. A dataset is one module that subclasses it plus one YAML
in configs/dataset/ whose `_target_` names the class (found with the same class lookup as a model
family's, so adding a dataset edits no registry) and whose `name` is what runs, eval.json and
caches call it. Every key of that YAML is the dataset's own: it checks them in `validate`.

What a dataset provides (class methods: they take the plain `dataset` config section, and the
shape, classes and checks need nothing loaded):

    image_shape(d)    (channels, height, width) of its images at these settings; a dataset of clips
                      (issue 30) gives (frames, channels, height, width), its ImageData.images
                      returns N×T×C×H×W, and only families with `clips` (genlab/models/base.py)
                      train on it
    num_classes(d)    how many classes its labels take (1: unlabelled)
    load(d)           the images of the configured split, an ImageData (genlab/data/batches.py):
                      uint8 images and integer labels by index, as stored (never binarized)
    reference(d, s)   the "train" or "test" split that metrics compare against (default: `load`
                      with dataset.split=s); a dataset without splits of its own says here how
                      it holds images out
    factor_names      names of its ground-truth factors of variation, one column each of
                      `ImageData.factors(index)`; () when it has none (mig needs them)
    provides          what else metrics may ask of it, beyond factors (e.g. "dsprites": every
                      image is genlab's procedural dSprites rendering of its index; "objects": it
                      answers `objects`)
    objects(d)        a dataset of clips whose frames show a fixed number of objects of known size
                      and classes (issue 30): an `Objects`, what genlab/metrics/video.py needs to
                      find and name the objects of a generated clip without knowing the dataset
    binarizable       whether dataset.binarize may be dynamic or static (grayscale images whose
                      grey levels are probabilities); every YAML has the `binarize` key
    validate(cfg)     one-line ConfigError for a bad value of its own keys (cfg: the whole run;
                      image_size and binarize are checked before, for every dataset)
    migrate(config)   fill in, in place, the keys a checkpoint's run config predates (its dataset
                      section above all)
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from genlab.data.batches import ImageData


@dataclass(frozen=True)
class Objects:
    """What a dataset of clips says of the objects in its frames (`Dataset.objects`)."""

    count: int        # objects in every frame
    size_px: float    # side of each object's square box at the clip's image size; an object's centre
                      # of mass sits at the centre of its box, so centres stay size_px / 2 from the edges
    classes: dict     # the plain config section of a still-image dataset of such objects, labelled
                      # by class: the classifier that names them is trained on it


class Dataset:
    """Base class of every dataset; see the module docstring for the contract."""

    factor_names: tuple[str, ...] = ()
    provides: frozenset[str] = frozenset()
    binarizable: bool = False

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int]:
        raise NotImplementedError

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        raise NotImplementedError

    @classmethod
    def load(cls, dataset: dict) -> ImageData:
        raise NotImplementedError

    @classmethod
    def reference(cls, dataset: dict, split: str) -> ImageData:
        """The `split` ("train" or "test") that metrics compare a model's images with."""
        return cls.load({**dataset, "split": split, "binarize": "none"})

    @classmethod
    def objects(cls, dataset: dict) -> Objects:
        """The objects in its frames (only datasets that provide "objects")."""
        raise NotImplementedError

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise ConfigError for the first bad value of this dataset's own keys."""

    @classmethod
    def migrate(cls, config: dict) -> None:
        """Add to a checkpoint's resolved run config the keys it predates, at the values it ran with."""

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """What metrics may need of it: "factors" when it has ground-truth factors, and `provides`."""
        return cls.provides | ({"factors"} if cls.factor_names else set())


def require_files_keys(cfg: DictConfig, folders: tuple[str, ...], splits: tuple[str, ...]) -> None:
    """The keys of a dataset read from files: each of `folders` (dataset.root, …) a path,
    dataset.download true or false, dataset.split one of `splits`."""
    from genlab.config.checks import ConfigError, require

    for key in folders:
        value = cfg.dataset[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"dataset.{key}={value!r} is not allowed: expected a folder path")
    if not isinstance(cfg.dataset.download, bool):
        raise ConfigError(f"dataset.download={cfg.dataset.download!r} is not allowed: expected true or false")
    require(cfg, "dataset.split", "str", choices=splits)


def require_conv_size(cfg: DictConfig, largest: int, bound: str) -> None:
    """dataset.image_size a multiple of 4 from 8 to `largest` (`bound` says where that comes from)."""
    from genlab.config.checks import ConfigError

    size = cfg.dataset.image_size
    if size < 8 or size % 4 or size > largest:
        raise ConfigError(f"dataset.image_size={size!r} is not allowed for {cfg.dataset.name}: expected a multiple of 4, "
                          f"at least 8 and {bound} (the conv nets halve the image at least twice)")
