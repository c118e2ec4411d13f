"""MNIST and Fashion-MNIST through torchvision: its download, md5 check and IDX parsing, then the
uint8 tensors it already holds (never its per-item PIL path).

MNIST: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition". Fashion-MNIST: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms". Both are 28×28 grayscale images in 10 classes, 60,000 for
training and 10,000 for testing.

Files: torchvision's layout, <root>/MNIST/raw/ (FashionMNIST/raw/ for Fashion-MNIST) holding the four
original .gz archives. torchvision checks each archive's md5, downloads it when missing or wrong,
and unpacks it next to the archive, so that folder must be writable the first time (later runs read
the unpacked files). Any failure is diagnosed file by file into one line: which files are missing,
fail their md5, or do not parse, and how to get them.

Other image sizes are resized once at load, from the 28 px originals, by antialiased bilinear
interpolation (torch.nn.functional.interpolate), rounded back to uint8.
"""

from __future__ import annotations

import errno
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import check_integrity

from genlab.data.base import Dataset, require_conv_size, require_files_keys
from genlab.data.batches import TensorData
from genlab.errors import UserError

TORCHVISION = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}
NATIVE_SIZE = 28
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


def load_mnist(name: str, root: str, split: str, download: bool, image_size: int) -> TensorData:
    """MNIST or Fashion-MNIST (`name`) from <root>/<MNIST|FashionMNIST>/raw as uint8 N×1×S×S + labels."""
    source = TORCHVISION[name]
    root_path = Path(root).expanduser().absolute()
    raw = root_path / source.__name__ / "raw"
    try:
        loaded = source(str(root_path), train=split == "train", download=download)
    except Exception as error:  # any failure inside torchvision's download or parsing is about the files
        raise UserError(_explain(source, raw, download, error)) from None
    images, labels = loaded.data, loaded.targets
    if len(images) != SPLIT_SIZES[split] or len(labels) != len(images) or int(labels.max()) >= len(source.classes):
        raise UserError(f"{source.__name__} {split} in {raw} has {len(images):,} images and {len(labels):,} labels, "
                        f"expected {SPLIT_SIZES[split]:,} of each with labels 0-9: the files are altered or partial; "
                        f"delete the unpacked files there and run again with dataset.download=true")
    images = images[:, None]
    if image_size != NATIVE_SIZE:
        images = resize(images, image_size)
    return TensorData(images, labels, tuple(source.classes))


def resize(images: torch.Tensor, size: int, chunk: int = 10_000) -> torch.Tensor:
    """uint8 N×C×H×W → uint8 N×C×size×size, antialiased bilinear, in chunks to bound memory."""
    out = torch.empty(images.shape[:2] + (size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].float()
        out[start : start + chunk] = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                                   align_corners=False).round_().clamp_(0, 255)
    return out


def _explain(source, raw: Path, download: bool, error: Exception) -> str:
    """One line: what is wrong with the files in `raw`, why loading failed, and how to get them."""
    archives = [name for name, _ in source.resources]
    where = f"{source.__name__} not loaded from {raw}"
    get = (f"copy the 4 original files ({', '.join(archives)}, from {source.mirrors[0]}) into {raw} and run "
           f"with dataset.download=true (torchvision checks their md5 and unpacks them, offline), or set "
           f"dataset.root (or GENLAB_DATA_ROOT) to a folder that has {source.__name__}/raw/")
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{where}: cannot write there ({error.strerror}): torchvision unpacks the .gz archives next to "
                f"them; copy {raw.parent} to a writable dataset.root, or unpack them there once with gunzip -k")
    problems = _file_problems(source, raw)
    found = "; ".join(text for _, text in problems) or " ".join(str(error).split())[:300]
    if download and "Error downloading" in str(error):
        reason = " ".join(str(error).split())[:300]
        return f"{where}: {found}; downloading failed ({reason}): no internet? Then {get}"
    if not download and any(kind in ("missing", "packed") for kind, _ in problems):
        return f"{where}: {found}; run with dataset.download=true to fetch or unpack them, or {get}"
    return (f"{where}: {found}; delete the broken files and run again with dataset.download=true "
            f"(it unpacks the archives again and downloads any that fail their md5), or {get}")


def _file_problems(source, raw: Path) -> list[tuple[str, str]]:
    """(kind, text) for each file of `source` in `raw` that is missing, packed, fails its md5 or does
    not parse; kind is one of missing, packed, md5, corrupt."""
    if not raw.is_dir():
        return [("missing", f"{raw} does not exist")]
    problems = []
    for archive, md5 in source.resources:
        unpacked = raw / archive.removesuffix(".gz")
        if unpacked.is_file():
            read = read_image_file if "images" in archive else read_label_file
            try:
                read(str(unpacked))
            except Exception as e:  # torchvision's parser asserts, or fails to reshape a truncated file
                detail = " ".join(f"{type(e).__name__} {e}".split())[:80]
                problems.append(("corrupt", f"{unpacked.name} is truncated or corrupt ({detail})"))
        elif not (raw / archive).is_file():
            problems.append(("missing", f"{archive} is missing"))
        elif not check_integrity(str(raw / archive), md5):
            problems.append(("md5", f"{archive} fails torchvision's md5 (a partial or corrupt download)"))
        else:
            problems.append(("packed", f"{archive} is not unpacked yet"))
    return problems


class MNIST(Dataset):
    """The contract (genlab/data/base.py) for MNIST: configs/dataset/mnist.yaml."""

    source = "mnist"  # the TORCHVISION entry
    binarizable = True
    largest_size = 64  # more would only upsample the 28 px originals

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int]:
        return (1, dataset["image_size"], dataset["image_size"])

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        return len(TORCHVISION[cls.source].classes)

    @classmethod
    def load(cls, dataset: dict) -> TensorData:
        return load_mnist(cls.source, dataset["root"], dataset["split"], dataset["download"], dataset["image_size"])

    @classmethod
    def validate(cls, cfg) -> None:
        require_files_keys(cfg, ("root",), tuple(SPLIT_SIZES))
        require_conv_size(cfg, cls.largest_size, f"at most {cls.largest_size}")


class FashionMNIST(MNIST):
    """Fashion-MNIST: configs/dataset/fashion_mnist.yaml (MNIST's keys and files' layout)."""

    source = "fashion_mnist"
