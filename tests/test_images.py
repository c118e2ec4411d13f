"""Image grids and files without torchvision: the same pixels as torchvision's make_grid and
save_image, and .npz archives of uint8 images that NumPy reads back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.images import grid, to_uint8, write_npz, write_png


@pytest.mark.parametrize("n,per_row,channels", [(7, 3, 1), (16, 4, 3), (5, 8, 1)])
def test_grid_is_torchvisions_make_grid(n, per_row, channels):
    from torchvision.utils import make_grid

    images = torch.rand(n, channels, 6, 5, generator=torch.Generator().manual_seed(n))
    assert torch.equal(grid(images, per_row), make_grid(images, nrow=per_row, pad_value=0.5))


def test_png_has_save_images_pixels(tmp_path):
    from torchvision.utils import save_image

    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 127.5 / 255])  # the ends and a rounding tie
    write_png(grid(images, 3), tmp_path / "ours.png")
    save_image(images, tmp_path / "torchvision.png", nrow=3, pad_value=0.5)
    ours, theirs = (np.asarray(Image.open(tmp_path / name)) for name in ("ours.png", "torchvision.png"))
    assert ours.shape == (2 * 10 + 2, 3 * 10 + 2, 3) and np.array_equal(ours, theirs)


def test_npz_holds_the_images_channels_last_and_repeats_byte_for_byte(tmp_path):
    images = torch.rand(10, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    for name in ("a.npz", "b.npz"):
        write_npz((to_uint8(chunk) for chunk in images.split(4)), 10, (3, 4, 5), tmp_path / name)
    with np.load(tmp_path / "a.npz") as archive:
        assert archive.files == ["images"]
        assert np.array_equal(archive["images"], to_uint8(images).permute(0, 2, 3, 1).numpy())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_npz_with_fewer_images_than_announced_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="got 4 images, expected 10"):
        write_npz([torch.zeros(4, 1, 2, 2, dtype=torch.uint8)], 10, (1, 2, 2), tmp_path / "short.npz")
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_grids_have_the_png_files_pixels(tmp_path):
    # One 8-bit rule for every image genlab writes: TensorBoard's own conversion of floats truncates.
    import io

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from genlab.training.logging import RunLogger

    images = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    images[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 127.5 / 255, 0.999])  # a tie, and 254.7 (truncated: 254)
    logger = RunLogger(tmp_path, 0, 10, interactive=False)
    logger.images(5, {"samples": (images, 2)})
    logger.close()
    png = np.asarray(Image.open(tmp_path / "samples" / "step_0000005_samples.png"))
    logged = [v.tensor.string_val[2] for path in tmp_path.glob("events.out.tfevents.*")
              for e in EventFileLoader(str(path)).Load() for v in e.summary.value if v.tag == "images/samples"]
    assert len(logged) == 1
    tensorboard = np.asarray(Image.open(io.BytesIO(logged[0])).convert("RGB"))
    assert np.array_equal(tensorboard, png) and png[2, 2:5, 0].tolist() == [0, 255, 128]
