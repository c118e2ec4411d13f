"""CelebA, read by genlab itself and decoded once into a cached uint8 array that later runs memory-map.

CelebA: Liu, Luo, Wang & Tang 2015, "Deep Learning Face Attributes in the Wild" (ICCV). 202,599
aligned-and-cropped 178×218 face photos, 40 binary attributes each (±1), and a partition
0 = train (162,770), 1 = valid (19,867), 2 = test (19,962).

Layouts read from <root>/celeba/ (per file, the .txt is used when both exist):
    original   img_align_celeba/NNNNNN.jpg, list_attr_celeba.txt (a count line, a line of the 40
               names, then "NNNNNN.jpg ±1 … ±1"), list_eval_partition.txt ("NNNNNN.jpg p")
    Kaggle     list_attr_celeba.csv ("image_id,<40 names>" then "NNNNNN.jpg,±1,…"),
               list_eval_partition.csv ("image_id,partition"), images in img_align_celeba/ or
               img_align_celeba/img_align_celeba/
torchvision's CelebA is not used to read them: it also needs the bounding-box and landmark files and
the md5 of the complete annotation files. Its Google Drive download (which needs the gdown package)
is used to fetch the dataset when it is missing and dataset.download is true.

Preprocessing, identical to torchvision's CenterCrop(crop) then Resize(image_size) on the PIL image:
the crop×crop square with top-left (round((W − crop)/2), round((H − crop)/2)), resized to
image_size² by PIL's bilinear filter (antialiased when downscaling). The default crop of 148 px is
PyTorch-VAE's (Subramanian 2020); 178 px keeps the full width, close to the PyTorch DCGAN
tutorial's Resize(64) + CenterCrop(64).

Classes for a conditional model: k chosen attributes a_1 … a_k give class Σ_i [a_i = +1]·2^(k−i)
(a_1 is the most significant bit), 2^k classes named like "Male, not Smiling".

Cache: <cache_dir>/celeba_<split>_crop<crop>_<size>px_<key>.npy, one uint8 array N×3×size×size,
where key hashes the preprocessing (format version, crop, size, filter), the resolved image folder
and the names of the split's images in order. It is written atomically (genlab/files.py:
a crash leaves no partial cache), and later loads memory-map it copy-on-write, so pages are read on
demand and shared between runs through the page cache. Decoding runs in a thread pool of
torch.get_num_threads() threads (hardware.threads): PIL releases the GIL while it decodes and resizes.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from genlab.data.base import Dataset, require_conv_size, require_files_keys
from genlab.data.batches import TensorData
from genlab.errors import UserError
from genlab.files import replacing

log = logging.getLogger("genlab")

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
NATIVE_WIDTH, NATIVE_HEIGHT = 178, 218
SPLITS = {"train": 0, "valid": 1, "test": 2}
CACHE_FORMAT = 1
DECODE_CHUNK = 256  # images per thread-pool task: amortises task overhead, keeps the bar moving

HOW_TO_GET = ("get img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from "
              "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or Kaggle's jessicali9530/celeba-dataset, "
              "with its .csv files) and unpack them into {folder}, or set dataset.root (or GENLAB_DATA_ROOT) "
              "to a folder that has celeba/")


@dataclass
class Layout:
    attributes: Path  # list_attr_celeba.txt or .csv
    partition: Path   # list_eval_partition.txt or .csv
    images: Path      # the folder holding NNNNNN.jpg


def load_celeba(root: str, split: str, download: bool, crop: int, image_size: int,
                attributes: list[str], cache_dir: str) -> TensorData:
    """The `split` of CelebA under <root>/celeba as uint8 N×3×S×S, labelled by `attributes`."""
    folder = Path(root).expanduser().absolute() / "celeba"
    try:
        layout = find_layout(folder)
    except UserError as missing:
        if not download:
            raise UserError(f"{missing}; {HOW_TO_GET.format(folder=folder)}, or run with dataset.download=true "
                            "(torchvision's Google Drive download; needs internet and the gdown package)") from None
        fetch_with_torchvision(folder, missing)
        layout = find_layout(folder)
    names, bits = read_attributes(layout.attributes, attributes)
    partition = read_partition(layout.partition)
    unlisted = [name for name in names if name not in partition]
    if unlisted:
        raise UserError(f"{layout.partition} has no row for {len(unlisted):,} of the {len(names):,} images in "
                        f"{layout.attributes.name} (first: {unlisted[0]}): it is truncated or from another copy; "
                        f"{HOW_TO_GET.format(folder=folder)}")
    chosen = [i for i, name in enumerate(names) if partition[name] == SPLITS[split]]
    if not chosen:
        present = sorted({p for p in partition.values()})
        raise UserError(f"no image of CelebA's {split} split in {layout.partition} (this copy has partition(s) "
                        f"{', '.join(map(str, present))} only): choose another dataset.split")
    files = [names[i] for i in chosen]
    images = cached_images(layout.images, files, split, crop, image_size, Path(cache_dir).expanduser().absolute())
    labels, class_names = attribute_classes(bits[chosen], attributes)
    return TensorData(images, labels, class_names)


def find_layout(folder: Path) -> Layout:
    """The annotation files and image folder in `folder`; UserError naming what is missing."""
    if not folder.is_dir():
        raise UserError(f"CelebA not found: {folder} does not exist")
    attributes = _first_existing(folder, "list_attr_celeba")
    partition = _first_existing(folder, "list_eval_partition")
    nested = folder / "img_align_celeba" / "img_align_celeba"  # Kaggle's zip nests the folder
    images = nested if nested.is_dir() else folder / "img_align_celeba"
    missing = [what for what, found in (("list_attr_celeba.txt (or .csv)", attributes),
                                         ("list_eval_partition.txt (or .csv)", partition),
                                         ("img_align_celeba/", images.is_dir())) if not found]
    if missing:
        raise UserError(f"CelebA incomplete in {folder}: missing {', '.join(missing)}")
    return Layout(attributes, partition, images)


def _first_existing(folder: Path, stem: str) -> Path | None:
    for suffix in (".txt", ".csv"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def fetch_with_torchvision(folder: Path, missing: UserError) -> None:
    """Download CelebA into `folder` with torchvision (Google Drive); UserError if that fails."""
    from torchvision.datasets import CelebA

    log.info(f"downloading CelebA into {folder} with torchvision (about 1.4 GB from Google Drive)")
    try:
        CelebA(str(folder.parent), split="all", target_type=[], download=True)
    except Exception as error:  # gdown missing, no internet, Drive quota, md5 mismatch: all mean "get it by hand"
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"{missing}, and torchvision's download failed ({type(error).__name__}: {reason}); "
                        f"{HOW_TO_GET.format(folder=folder)}") from None


def read_attributes(path: Path, wanted: list[str]) -> tuple[list[str], np.ndarray]:
    """Image names and the `wanted` attributes as bits (N×k, uint8) from the .txt or .csv attribute file."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    csv = path.suffix == ".csv"
    if not lines:
        raise UserError(f"{path} is empty; {HOW_TO_GET.format(folder=path.parent)}")
    if csv:
        header, rows, first_row_line = lines[0].split(",")[1:], lines[1:], 2
    else:
        if not lines[0].strip().isdigit():
            raise UserError(f"{path} does not start with the image count: not a CelebA attribute file; "
                            f"{HOW_TO_GET.format(folder=path.parent)}")
        if int(lines[0]) != len(lines) - 2:
            raise UserError(f"{path} is truncated: its first line announces {int(lines[0]):,} images but it has "
                            f"{len(lines) - 2:,} rows; {HOW_TO_GET.format(folder=path.parent)}")
        header, rows, first_row_line = lines[1].split(), lines[2:], 3
    unknown = [name for name in wanted if name not in header]
    if unknown:
        raise UserError(f"{path} has no attribute {', '.join(unknown)} (its header names {len(header)} attributes): "
                        f"not a CelebA attribute file; {HOW_TO_GET.format(folder=path.parent)}")
    columns = [1 + header.index(name) for name in wanted]
    names, bits = [], np.empty((len(rows), len(wanted)), dtype=np.uint8)
    for row, line in enumerate(rows):
        fields = line.split(",") if csv else line.split()
        values = [fields[c] for c in columns] if len(fields) == len(header) + 1 else None
        if values is None or not all(v.strip() in ("1", "-1") for v in values):
            raise UserError(f"{path} line {row + first_row_line} is not an image name and {len(header)} values "
                            f"of ±1: the file is truncated or corrupt; {HOW_TO_GET.format(folder=path.parent)}")
        names.append(fields[0].strip())
        bits[row] = [v.strip() == "1" for v in values]
    return names, bits


def read_partition(path: Path) -> dict[str, int]:
    """Image name → partition (0 train, 1 valid, 2 test) from the .txt or .csv partition file."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    csv = path.suffix == ".csv"
    partition = {}
    for number, line in enumerate(lines[1:] if csv else lines, start=2 if csv else 1):
        fields = [f.strip() for f in (line.split(",") if csv else line.split())]
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise UserError(f"{path} line {number} is not an image name and a partition 0, 1 or 2: the file is "
                            f"truncated or corrupt; {HOW_TO_GET.format(folder=path.parent)}")
        partition[fields[0]] = int(fields[1])
    return partition


def attribute_classes(bits: np.ndarray, attributes: list[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Class index per image (first attribute = most significant bit) and the 2^k class names."""
    k = len(attributes)
    weights = np.array([2 ** (k - 1 - i) for i in range(k)], dtype=np.int64)
    labels = torch.from_numpy(bits.astype(np.int64) @ weights if k else np.zeros(len(bits), dtype=np.int64))
    names = tuple(", ".join(a if (c >> (k - 1 - i)) & 1 else f"not {a}" for i, a in enumerate(attributes)) or "any"
                  for c in range(2**k))
    return labels, names


def cached_images(image_dir: Path, files: list[str], split: str, crop: int, size: int, cache_dir: Path) -> torch.Tensor:
    """The decoded images of `files`, from the cache (memory-mapped) or decoded into it first."""
    key = hashlib.blake2b(digest_size=8)
    for part in (f"format {CACHE_FORMAT}", "bilinear", str(crop), str(size), str(image_dir.resolve()), *files):
        key.update(part.encode() + b"\0")
    path = cache_dir / f"celeba_{split}_crop{crop}_{size}px_{key.hexdigest()}.npy"
    shape = (len(files), 3, size, size)
    if path.is_file():
        try:
            array = np.load(path, mmap_mode="c")  # copy-on-write: writable for torch, never written back
            if array.shape == shape and array.dtype == np.uint8:
                log.info(f"CelebA {split}: {len(files):,} images memory-mapped from {path}")
                return torch.from_numpy(array)
        except (OSError, ValueError):
            pass
        log.warning(f"{path} is not a valid cache for these settings: decoding again")
    decode_to_cache(image_dir, files, crop, size, path)
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def decode_to_cache(image_dir: Path, files: list[str], crop: int, size: int, path: Path) -> None:
    """Decode every file into a new .npy at `path`, atomically, with all torch threads and a progress bar."""
    missing = [name for name in files if not (image_dir / name).is_file()]
    if missing:
        raise UserError(f"{len(missing):,} of the {len(files):,} images listed are missing from {image_dir} "
                        f"(first: {missing[0]}): the folder is incomplete; unpack img_align_celeba.zip there again")
    threads = torch.get_num_threads()
    log.info(f"decoding {len(files):,} CelebA images (crop {crop} px → {size} px) with {threads} threads into {path}")
    start = time.perf_counter()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:  # genlab's one atomic writer (a cache_dir may be shared by a lab's users)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
            _decode_all([image_dir / name for name in files], crop, size, out, threads)
            out.flush()
            del out
    except OSError as e:
        raise UserError(f"cannot write the CelebA cache {path} ({e.strerror}): free space there or set "
                        "dataset.cache_dir (or GENLAB_CACHE_DIR) to a writable folder") from None
    log.info(f"decoded {len(files):,} images in {time.perf_counter() - start:.1f} s")


def _decode_all(paths: list[Path], crop: int, size: int, out: np.ndarray, threads: int) -> None:
    def decode_chunk(start: int) -> int:
        stop = min(start + DECODE_CHUNK, len(paths))
        for i in range(start, stop):
            out[i] = decode_image(paths[i], crop, size)
        return stop - start

    progress = Progress(TextColumn("[bold]decode CelebA"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=not sys.stdout.isatty())
    pool = ThreadPoolExecutor(threads)
    try:
        with progress:
            task = progress.add_task("decode", total=len(paths))
            for done in as_completed([pool.submit(decode_chunk, s) for s in range(0, len(paths), DECODE_CHUNK)]):
                progress.advance(task, done.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def decode_image(path: Path, crop: int, size: int) -> np.ndarray:
    """One JPEG → uint8 3×size×size: centre crop, then bilinear resize (torchvision's CenterCrop + Resize)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path} cannot be decoded ({' '.join(str(e).split())[:100]}): the file is corrupt or "
                        "truncated; unpack it from img_align_celeba.zip again") from None
    width, height = image.size
    if crop > min(width, height):
        raise UserError(f"{path} is {width}×{height} px, smaller than dataset.crop={crop}: use a smaller crop "
                        f"(CelebA's aligned images are {NATIVE_WIDTH}×{NATIVE_HEIGHT})")
    left, top = round((width - crop) / 2), round((height - crop) / 2)
    image = image.crop((left, top, left + crop, top + crop))
    if crop != size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


class CelebA(Dataset):
    """The contract (genlab/data/base.py) for CelebA: configs/dataset/celeba.yaml."""

    @classmethod
    def image_shape(cls, dataset: dict) -> tuple[int, int, int]:
        return (3, dataset["image_size"], dataset["image_size"])

    @classmethod
    def num_classes(cls, dataset: dict) -> int:
        return 2 ** len(dataset["attributes"])

    @classmethod
    def load(cls, dataset: dict) -> TensorData:
        return load_celeba(dataset["root"], dataset["split"], dataset["download"], dataset["crop"],
                           dataset["image_size"], list(dataset["attributes"]), dataset["cache_dir"])

    @classmethod
    def validate(cls, cfg) -> None:
        from omegaconf import OmegaConf

        from genlab.config.checks import ConfigError, require

        require_files_keys(cfg, ("root", "cache_dir"), tuple(SPLITS))
        largest = require(cfg, "dataset.crop", "int", low=8, high=NATIVE_WIDTH)
        attributes = cfg.dataset.attributes
        names = OmegaConf.to_container(attributes) if OmegaConf.is_list(attributes) else attributes
        # 2^8 = 256 classes already leave most classes with few of CelebA's 162,770 training images.
        if not isinstance(names, list) or not all(isinstance(a, str) for a in names) or len(set(names)) != len(names) \
                or len(names) > 8:
            raise ConfigError(f"dataset.attributes={names!r} is not allowed: expected a list of at most 8 "
                              "different CelebA attributes, e.g. [Male,Smiling] (2^k classes)")
        unknown = [a for a in names if a not in ATTRIBUTES]
        if unknown:
            raise ConfigError(f"dataset.attributes has {unknown[0]!r}, not a CelebA attribute: choose from "
                              f"{', '.join(ATTRIBUTES)}")
        require_conv_size(cfg, largest, f"at most dataset.crop={largest}")
