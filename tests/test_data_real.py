"""MNIST, Fashion-MNIST and CelebA from ../shared/data, through genlab's batch pipeline.

The shared data is read-only: MNIST tests unpack a copy in a temporary folder (once per session),
CelebA tests read the shared folder in place with the decode cache in a temporary folder. No test
touches the network: urlopen and sockets fail, so a download attempt shows up as "no internet".
"""

from __future__ import annotations

import errno
import shutil
import socket
import urllib.error
import urllib.request

import pytest
import torch

from conftest import SHARED_DATA, TINY, genlab, run_dirs
from genlab.config.validate import ConfigError, validate_train
from genlab.config.compose import compose_jobs
from genlab.data import build_dataset
from genlab.data import celeba as celeba_module
from genlab.data.batches import Batches, ShuffledBatches, TensorData, binarize, binarize_static, on_device
from genlab.errors import UserError

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the test data in {SHARED_DATA}")

CELEBA = SHARED_DATA / "celeba"
CPU = torch.device("cpu")
# Published label counts: LeCun et al.'s MNIST files, Zalando's Fashion-MNIST (balanced by design).
HISTOGRAMS = {
    ("mnist", "train"): [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    ("mnist", "test"): [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ("fashion_mnist", "train"): [6000] * 10,
    ("fashion_mnist", "test"): [1000] * 10,
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A writable copy of MNIST and Fashion-MNIST, unpacked once by torchvision (offline: md5s match)."""
    root = tmp_path_factory.mktemp("data")
    for folder in ("MNIST", "FashionMNIST"):
        shutil.copytree(SHARED_DATA / folder, root / folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("tried to download"))
        for name in ("mnist", "fashion_mnist"):
            build_dataset(mnist_cfg(root, name), seed=0)
    return root


@pytest.fixture(scope="session")
def celeba_cache(tmp_path_factory):
    """A decode cache filled once with the shared CelebA subset at the default settings."""
    cache = tmp_path_factory.mktemp("cache")
    build_dataset(celeba_cfg(SHARED_DATA, cache), seed=0)
    return cache


def mnist_cfg(root, name="mnist", **overrides) -> dict:
    return {"name": name, "root": str(root), "download": True, "split": "train", "image_size": 28,
            "binarize": "none", **overrides}


def celeba_cfg(root, cache, **overrides) -> dict:
    return {"name": "celeba", "root": str(root), "download": False, "split": "train", "crop": 148,
            "image_size": 64, "attributes": ["Male", "Smiling"], "cache_dir": str(cache), "binarize": "none",
            **overrides}


def everything(data):
    index = torch.arange(data.num_images)
    return data.images(index), data.labels(index)


# --- MNIST and Fashion-MNIST ---------------------------------------------------------------------

@pytest.mark.parametrize("name,split", list(HISTOGRAMS))
def test_mnist_sizes_and_label_histograms_are_the_published_ones(mnist_root, name, split):
    data = build_dataset(mnist_cfg(mnist_root, name, split=split, download=False), seed=0)
    images, labels = everything(data)
    assert data.num_images == {"train": 60_000, "test": 10_000}[split]
    assert data.image_shape == (1, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels, minlength=10).tolist() == HISTOGRAMS[name, split]
    assert data.num_classes == 10 and len(data.class_names) == 10  # cgan conditions on the 10 classes
    first = {"mnist": [5, 0, 4, 1, 9], "fashion_mnist": [9, 0, 0, 3, 0]}[name]
    if split == "train":
        assert labels[:5].tolist() == first


def test_mnist_resized_once_at_load_keeps_brightness(mnist_root):
    native = build_dataset(mnist_cfg(mnist_root, split="test"), seed=0)
    small = build_dataset(mnist_cfg(mnist_root, split="test", image_size=16), seed=0)
    assert small.image_shape == (1, 16, 16)
    # Antialiased (area-like) downsampling preserves the mean intensity up to border effects.
    assert everything(small)[0].float().mean().item() == pytest.approx(everything(native)[0].float().mean().item(), rel=0.02)


# --- binarization ----------------------------------------------------------------------------------

def test_binarize_draws_bernoulli_of_pixel_over_255():
    values = torch.tensor([0, 1, 64, 128, 254, 255], dtype=torch.uint8)
    draws = binarize(values.repeat(100_000, 1), torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0, 255}
    freq = (draws == 255).double().mean(0)
    p = values.double() / 255
    assert freq[0] == 0 and freq[-1] == 1  # black stays black, white stays white
    assert torch.all((freq - p).abs() <= 5 * (p * (1 - p) / 100_000).sqrt() + 1e-12)


def test_static_binarization_is_one_fixed_draw_from_the_seed(mnist_root):
    gray = build_dataset(mnist_cfg(mnist_root, split="test"), seed=0)
    static = build_dataset(mnist_cfg(mnist_root, split="test", binarize="static"), seed=0)
    draw, again, other = (everything(d)[0] for d in (static, binarize_static(gray, 0), binarize_static(gray, 1)))
    gray_images = everything(gray)[0]
    assert set(draw.unique().tolist()) == {0, 255}
    assert torch.equal(draw, again) and not torch.equal(draw, other)
    assert torch.all(draw[gray_images == 0] == 0) and torch.all(draw[gray_images == 255] == 255)
    # 7.8 M Bernoulli pixels: the mean matches the grayscale mean to well within 1e-3 (std <= 1.8e-4).
    assert (draw.double().mean() - gray_images.double().mean()).abs() / 255 < 1e-3
    # The batches of a static run are that one draw, never redrawn.
    index = ShuffledBatches(static.num_images, 64, seed=0).next_index()
    batch = next(Batches(static, 64, seed=0, device=CPU, dynamic_binarize=False))
    assert torch.equal(batch.images * 255, draw[index].float())


def test_dynamic_binarization_draws_afresh_per_batch(mnist_root):
    images, labels = everything(build_dataset(mnist_cfg(mnist_root, split="test"), seed=0))
    small = TensorData(images[:500], labels[:500], tuple(map(str, range(10))))
    batches = Batches(small, 500, seed=3, device=CPU, dynamic_binarize=True)
    order = ShuffledBatches(500, 500, seed=3)  # one batch per epoch: every image, reshuffled
    draws = []
    for _ in range(2):
        batch, index = next(batches), order.next_index()
        assert torch.equal(batch.labels, small.labels(index))
        unshuffled = torch.empty_like(batch.images)
        unshuffled[index] = batch.images
        draws.append(unshuffled)
    gray = images[:500].double() / 255
    for draw in draws:
        assert set(draw.unique().tolist()) == {0.0, 1.0}
        assert (draw.double().mean() - gray.mean()).abs() < 5e-3  # 392,000 Bernoulli draws: std ~4e-4
    # Each image is drawn afresh in epoch 1: pixels strictly between black and white differ often.
    uncertain = (gray > 0.1) & (gray < 0.9)
    assert (draws[0] != draws[1])[uncertain].double().mean() > 0.2
    assert torch.equal(draws[0][gray == 0], draws[1][gray == 0])


def test_dynamic_binarization_resumes_bit_exactly(mnist_root):
    images, labels = everything(build_dataset(mnist_cfg(mnist_root, split="test"), seed=0))
    data = TensorData(images[:1000], labels[:1000], tuple(map(str, range(10))))
    straight = Batches(data, 100, seed=3, device=CPU, dynamic_binarize=True)
    expected = [next(straight) for _ in range(13)]  # 10 batches per epoch: crosses into epoch 1
    interrupted = Batches(data, 100, seed=3, device=CPU, dynamic_binarize=True)
    for _ in range(7):
        next(interrupted)
    resumed = Batches(data, 100, seed=3, device=CPU, dynamic_binarize=True)
    resumed.load_state_dict(interrupted.state_dict())
    for want in expected[7:]:
        got = next(resumed)
        assert torch.equal(got.images, want.images) and torch.equal(got.labels, want.labels)


def test_no_binarization_gives_the_grayscale_pixels(mnist_root):
    data = build_dataset(mnist_cfg(mnist_root, split="test"), seed=0)
    batch = next(Batches(data, 100, seed=0, device=CPU, dynamic_binarize=False))
    index = ShuffledBatches(data.num_images, 100, seed=0).next_index()
    assert torch.equal(batch.images, data.images(index).float() / 255)
    assert torch.equal(batch.labels, data.labels(index))


def test_dataset_moves_to_the_gpu_only_when_it_takes_at_most_half_the_free_memory(monkeypatch):
    data = TensorData(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64), ("any",))
    moved = []
    monkeypatch.setattr(TensorData, "to", lambda self, device: moved.append(device) or self)
    for free_bytes in (2 * data.nbytes, 2 * data.nbytes - 2):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, free=free_bytes: (free, 10 * free))
        assert on_device(data, torch.device("cuda")) is data
    on_device(data, CPU)
    assert moved == [torch.device("cuda")]  # only when it fitted, and never for the CPU


# --- CelebA --------------------------------------------------------------------------------------

def read_shared_attributes() -> tuple[list[str], dict[str, list[int]]]:
    """Independent parse of the shared list_attr_celeba.txt: names, and name → 40 values of ±1."""
    lines = (CELEBA / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    rows = {parts[0]: [int(v) for v in parts[1:]] for parts in (line.split() for line in lines[2:])}
    return header, rows


def test_celeba_loads_1129_train_images_at_64px_with_attribute_classes(celeba_cache):
    data = build_dataset(celeba_cfg(SHARED_DATA, celeba_cache), seed=0)
    images, labels = everything(data)
    assert data.num_images == 1129 and data.image_shape == (3, 64, 64) and images.dtype == torch.uint8
    assert data.class_names == ("not Male, not Smiling", "not Male, Smiling", "Male, not Smiling", "Male, Smiling")
    header, rows = read_shared_attributes()
    male, smiling = header.index("Male"), header.index("Smiling")
    expected = [2 * (v[male] == 1) + (v[smiling] == 1) for v in rows.values()]
    assert labels.tolist() == expected


def test_celeba_pixels_equal_torchvision_centre_crop_and_resize(celeba_cache):
    from PIL import Image
    from torchvision import transforms

    data = build_dataset(celeba_cfg(SHARED_DATA, celeba_cache), seed=0)
    reference = transforms.Compose([transforms.CenterCrop(148), transforms.Resize(64), transforms.PILToTensor()])
    for i, name in ((0, "000001.jpg"), (1128, sorted(p.name for p in (CELEBA / "img_align_celeba").iterdir())[-1])):
        with Image.open(CELEBA / "img_align_celeba" / name) as image:
            assert torch.equal(data.images(torch.tensor([i]))[0], reference(image.convert("RGB")))


def test_celeba_second_load_memory_maps_the_cache_without_decoding(celeba_cache, monkeypatch):
    before = sorted(celeba_cache.iterdir())
    first = everything(build_dataset(celeba_cfg(SHARED_DATA, celeba_cache), seed=0))[0]
    monkeypatch.setattr(celeba_module, "decode_image", lambda *a: pytest.fail("decoded again"))
    second = everything(build_dataset(celeba_cfg(SHARED_DATA, celeba_cache), seed=0))[0]
    assert torch.equal(first, second) and sorted(celeba_cache.iterdir()) == before and len(before) == 1


def test_celeba_kaggle_csv_layout_gives_the_same_dataset(celeba_cache, tmp_path, monkeypatch):
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    (folder / "img_align_celeba" / "img_align_celeba").symlink_to(CELEBA / "img_align_celeba")  # Kaggle's nesting
    header, rows = read_shared_attributes()
    (folder / "list_attr_celeba.csv").write_text(
        "\n".join([",".join(["image_id", *header])] + [",".join([n, *map(str, v)]) for n, v in rows.items()]) + "\n")
    partition = [line.split() for line in (CELEBA / "list_eval_partition.txt").read_text().splitlines()]
    (folder / "list_eval_partition.csv").write_text(
        "\n".join(["image_id,partition"] + [f"{n},{p}" for n, p in partition]) + "\n")
    txt = build_dataset(celeba_cfg(SHARED_DATA, celeba_cache, attributes=["Smiling", "Eyeglasses"]), seed=0)
    # The same image files and preprocessing: the CSV layout reuses the cache the txt layout filled.
    monkeypatch.setattr(celeba_module, "decode_image", lambda *a: pytest.fail("decoded again"))
    csv = build_dataset(celeba_cfg(tmp_path, celeba_cache, attributes=["Smiling", "Eyeglasses"]), seed=0)
    assert csv.num_images == 1129 and csv.num_classes == 4
    assert all(torch.equal(a, b) for a, b in zip(everything(txt), everything(csv)))


# --- missing or broken data: one line that says where, what and how ------------------------------

def load_error(cfg: dict) -> str:
    with pytest.raises(UserError) as caught:
        build_dataset(cfg, seed=0)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_mnist_missing_folder_without_download(tmp_path):
    message = load_error(mnist_cfg(tmp_path / "nowhere", download=False))
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "dataset.download=true" in message


def test_mnist_no_internet(tmp_path):
    message = load_error(mnist_cfg(tmp_path, "fashion_mnist"))
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "downloading failed" in message and "network disabled in tests" in message and "no internet" in message
    assert "train-images-idx3-ubyte.gz is missing" in message


def test_mnist_partial_archive_fails_its_md5(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_root / "MNIST" / "raw" / name, raw)
    half = (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(half[: len(half) // 2])
    message = load_error(mnist_cfg(tmp_path))
    assert "train-images-idx3-ubyte.gz fails torchvision's md5" in message and "downloading failed" in message


def test_mnist_truncated_unpacked_file(mnist_root, tmp_path):
    shutil.copytree(mnist_root / "MNIST", tmp_path / "MNIST")
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1000])
    message = load_error(mnist_cfg(tmp_path, split="test"))
    assert "t10k-images-idx3-ubyte is truncated or corrupt" in message and "delete" in message


def test_mnist_read_only_root(tmp_path, monkeypatch):
    shutil.copytree(SHARED_DATA / "MNIST", tmp_path / "MNIST")  # archives only: torchvision must unpack them

    def read_only(*args, **kwargs):  # the tests may run as root, which chmod cannot stop
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("torchvision.datasets.utils.extract_archive", read_only)
    message = load_error(mnist_cfg(tmp_path))
    assert "cannot write there" in message and "gunzip -k" in message


def small_celeba(root, count: int = 6, attr_count: int | None = None, partition_rows: int | None = None):
    """<root>/celeba with the first `count` shared images and their rows, in the original txt layout."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    lines = (CELEBA / "list_attr_celeba.txt").read_text().splitlines()
    rows = lines[2 : 2 + count]
    for row in rows:
        shutil.copy(CELEBA / "img_align_celeba" / row.split()[0], folder / "img_align_celeba")
    header = [str(count if attr_count is None else attr_count), lines[1]]
    (folder / "list_attr_celeba.txt").write_text("\r\n".join(header + rows) + "\r\n")
    partition = (CELEBA / "list_eval_partition.txt").read_text().splitlines()[: count if partition_rows is None else partition_rows]
    (folder / "list_eval_partition.txt").write_text("\r\n".join(partition) + "\r\n")
    return folder


def test_celeba_missing_folder_without_download(tmp_path):
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert str(tmp_path / "celeba") in message and "does not exist" in message
    assert "list_attr_celeba.txt" in message and "list_eval_partition.txt" in message and ".csv" in message
    assert "mmlab.ie.cuhk.edu.hk" in message and "dataset.download=true" in message


def test_celeba_download_failure(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr("torchvision.datasets.celeba.download_file_from_google_drive", offline)
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache", download=True))
    assert "torchvision's download failed" in message and "network disabled in tests" in message
    assert "mmlab.ie.cuhk.edu.hk" in message


def test_celeba_missing_annotation_file(tmp_path):
    (small_celeba(tmp_path) / "list_eval_partition.txt").unlink()
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert "missing list_eval_partition.txt (or .csv)" in message and str(tmp_path / "celeba") in message


def test_celeba_truncated_attribute_file(tmp_path):
    small_celeba(tmp_path, attr_count=202_599)
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert "list_attr_celeba.txt is truncated" in message and "202,599" in message


def test_celeba_partition_file_missing_rows(tmp_path):
    small_celeba(tmp_path, partition_rows=4)
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert "list_eval_partition.txt has no row for 2 of the 6 images" in message


def test_celeba_missing_image(tmp_path):
    folder = small_celeba(tmp_path)
    (folder / "img_align_celeba" / "000003.jpg").unlink()
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert "1 of the 6 images listed are missing" in message and "000003.jpg" in message


def test_celeba_corrupt_image_leaves_no_cache(tmp_path):
    folder = small_celeba(tmp_path)
    jpeg = folder / "img_align_celeba" / "000004.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:1500])
    message = load_error(celeba_cfg(tmp_path, tmp_path / "cache"))
    assert str(jpeg) in message and "cannot be decoded" in message
    assert list((tmp_path / "cache").iterdir()) == []  # the partial cache file is gone


def test_celeba_split_without_images(celeba_cache):
    message = load_error(celeba_cfg(SHARED_DATA, celeba_cache, split="valid"))
    assert "no image of CelebA's valid split" in message and "partition(s) 0 only" in message


def test_celeba_cache_dir_not_writable(tmp_path):
    small_celeba(tmp_path)
    (tmp_path / "file").write_text("")
    message = load_error(celeba_cfg(tmp_path, tmp_path / "file" / "cache"))
    assert "cannot write the CelebA cache" in message and "dataset.cache_dir" in message


# --- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,expected", [
    (["dataset=mnist", "dataset.binarize=sometimes"], "dataset.binarize='sometimes' is not allowed: choose one of none, dynamic, static"),
    (["dataset=celeba", "dataset.binarize=dynamic"], "dataset.binarize=dynamic is not allowed for celeba"),
    (["dataset=shapes", "dataset.binarize=static"], "dataset.binarize=static is not allowed for shapes"),
    (["dataset=fashion_mnist", "dataset.split=valid"], "dataset.split='valid' is not allowed: choose one of train, test"),
    (["dataset=mnist", "dataset.download=maybe"], "dataset.download='maybe' is not allowed: expected true or false"),
    (["dataset=mnist", "dataset.image_size=30"], "dataset.image_size=30 is not allowed for mnist: expected a multiple of 4"),
    (["dataset=celeba", "dataset.crop=200"], "dataset.crop=200 is not allowed: expected an integer >= 8 and <= 178"),
    (["dataset=celeba", "dataset.crop=48"], "dataset.image_size=64 is not allowed for celeba"),
    (["dataset=celeba", "dataset.attributes=[Male,Bearded]"], "dataset.attributes has 'Bearded', not a CelebA attribute"),
    (["dataset=celeba", "dataset.attributes=[Male,Male]"], "dataset.attributes=['Male', 'Male'] is not allowed"),
])
def test_bad_dataset_values_are_refused_before_any_work(overrides, expected):
    with pytest.raises(ConfigError, match="^" + expected.replace("[", r"\[").replace("(", r"\(")):
        for cfg in compose_jobs("train", overrides, multirun=False):
            validate_train(cfg)


def test_data_root_defaults_to_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_DATA_ROOT", str(tmp_path))
    for name in ("mnist", "fashion_mnist", "celeba"):
        (cfg,) = compose_jobs("train", [f"dataset={name}"], multirun=False)
        validate_train(cfg)
        assert cfg.dataset.root == str(tmp_path)


# --- end to end ---------------------------------------------------------------------------------

def test_run_log_names_the_binarization(mnist_root, tmp_path, caplog):
    from genlab.commands.train import train

    (cfg,) = compose_jobs("train", [*TINY, "dataset=mnist", f"dataset.root={mnist_root}", "dataset.split=test",
                                    "dataset.binarize=dynamic"], multirun=False)
    with caplog.at_level("INFO", logger="genlab"):
        train(cfg, tmp_path)
    assert "vae on mnist/test (1, 16, 16), 10,000 images, 10 classes, binarize dynamic" in caplog.text
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["data"]["num_classes"] == 10 and state["data"]["class_names"][3] == "3 - three"


def test_vae_trains_on_mnist_and_the_read_only_celeba_subset(mnist_root, celeba_cache, tmp_path):
    # One sweep, one start-up: a root holding the MNIST copy and the shared (read-only) CelebA, named
    # by the environment (Hydra composes a sweep's non-sweep overrides, such as dataset.root, onto
    # the default dataset before it sweeps dataset=, and shapes has no root).
    root = tmp_path / "data"
    root.mkdir()
    (root / "MNIST").symlink_to(mnist_root / "MNIST")
    (root / "celeba").symlink_to(CELEBA)
    result = genlab("train", "-m", *TINY, "dataset=mnist,celeba", "hydra.sweep.dir=sweep", cwd=tmp_path,
                    env={"GENLAB_DATA_ROOT": str(root), "GENLAB_CACHE_DIR": str(celeba_cache)})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "vae on mnist/train (1, 16, 16), 60,000 images, 10 classes, binarize none" in output
    assert "vae on celeba/train (3, 16, 16), 1,129 images, 4 classes, binarize none" in output
    runs = run_dirs(tmp_path / "sweep")
    assert sorted(run.name for run in runs) == ["dataset=celeba", "dataset=mnist"]
    for run in runs:
        assert (run / "samples" / "step_0000004_reconstructions.png").is_file()
        assert (run / "checkpoints" / "last.pt").is_file()
