"""dataset=moving_mnist (genlab/data/moving_mnist.py): the generator's speed, bounce and max merge,
the same clips from the same seed, train and test clips from disjoint MNIST digits, uint8 clips of
the configured shape, and one-line errors for bad keys."""

from __future__ import annotations


import pytest
import torch
from conftest import genlab, needs_mnist

from genlab.config.checks import ConfigError
from genlab.config.compose import compose_jobs
from genlab.config.validate import validate_train
from genlab.data import build_dataset
from genlab.data.moving_mnist import DIGIT, RANGE, STEP, TEST_CLIPS, paste, trajectories


def section(root, **keys) -> dict:
    d = {"_target_": "genlab.data.moving_mnist.MovingMNIST", "name": "moving_mnist", "root": str(root),
         "download": True, "split": "train", "frames": 20, "digits": 2, "image_size": 64, "seed": 0,
         "binarize": "none"}
    d.update(keys)
    return d


def test_digits_move_at_constant_speed_and_reflect_at_the_edges():
    g = torch.Generator().manual_seed(1)
    start = torch.rand(500, 2, generator=g, dtype=torch.float64)
    theta = torch.rand(500, generator=g, dtype=torch.float64) * 2 * torch.pi
    corners = trajectories(start, theta, 60)                             # (500, 60, 2) px
    assert corners.min() == 0 and corners.max() == RANGE                # every digit reaches both walls …
    step = corners.diff(dim=1).double()                                  # … and never leaves the canvas
    expected = (STEP * RANGE * torch.stack([theta.cos(), theta.sin()], -1)).abs()[:, None]
    # Away from the walls each axis moves |v|·3.6 px a frame, ±1 px of flooring; the speed is constant.
    inside = ((corners[:, :-1] > 4) & (corners[:, :-1] < RANGE - 4) & (corners[:, 1:] > 4) & (corners[:, 1:] < RANGE - 4))
    assert ((step.abs() - expected).abs()[inside] <= 1).all()
    # A bounce: the direction of an axis flips exactly where that axis meets a wall.
    sign = step.sign()
    flips = (sign[:, 1:] * sign[:, :-1]) < 0
    at_wall = (corners[:, 1:-1] == 0) | (corners[:, 1:-1] == RANGE)
    assert flips.any() and (at_wall | ~flips).all()


def test_overlapping_digits_merge_by_max():
    a = torch.zeros(DIGIT, DIGIT, dtype=torch.uint8)
    b = torch.zeros(DIGIT, DIGIT, dtype=torch.uint8)
    a[:, :] = 100
    b[10:20, 10:20] = 200
    corners = torch.tensor([[[[0, 0]], [[5, 5]]]])                      # (1 clip, 2 digits, 1 frame, xy)
    frame = paste(torch.stack([a, b])[None], corners)[0, 0]
    assert frame[0, 0] == 100 and frame[15, 15] == 200 and frame[30, 30] == 0
    assert frame[32, 32] == 0 and frame[27, 27] == 100 and frame[5 + 10, 5 + 10] == 200
    c = torch.full((DIGIT, DIGIT), 50, dtype=torch.uint8)
    lower = paste(torch.stack([a, c])[None], torch.tensor([[[[0, 0]], [[0, 0]]]]))[0, 0]
    assert (lower[:DIGIT, :DIGIT] == 100).all()                         # max, not sum or the last one drawn


@needs_mnist
def test_clips_are_uint8_of_the_configured_shape_and_the_same_for_a_seed(data_root):
    data = build_dataset(section(data_root, image_size=32, frames=12), 0)
    assert data.image_shape == (12, 1, 32, 32) and data.num_images == 1_000_000
    clips = data.images(torch.arange(5))
    assert clips.dtype == torch.uint8 and clips.shape == (5, 12, 1, 32, 32)
    again = build_dataset(section(data_root, image_size=32, frames=12), 0).images(torch.arange(5))
    assert torch.equal(clips, again)
    other = build_dataset(section(data_root, image_size=32, frames=12, seed=1), 0).images(torch.arange(5))
    assert not torch.equal(clips, other)
    # A clip is a function of its index alone: asked alone or in a batch, the same pixels.
    assert torch.equal(data.images(torch.tensor([3])), clips[3:4])
    # 32 px is the 64 px canvas area-averaged.
    full = build_dataset(section(data_root, image_size=64, frames=12), 0).images(torch.arange(5))
    pooled = torch.nn.functional.avg_pool2d(full.flatten(0, 1).float(), 2).round().to(torch.uint8).view_as(clips)
    assert torch.equal(clips, pooled)


@needs_mnist
def test_each_frame_is_the_max_of_the_clips_two_mnist_digits_at_their_corners(data_root):
    from genlab.data.mnist import load_mnist

    data = build_dataset(section(data_root, frames=6), 0)
    test = build_dataset(section(data_root, frames=6, split="test"), 0)
    assert test.num_images == TEST_CLIPS
    for split, clips in (("train", data), ("test", test)):
        mnist = load_mnist("mnist", str(data_root), split, False, 28)
        index = torch.tensor([7, 123])
        which = clips.digit_indices(index)
        assert which.max() < mnist.num_images
        assert torch.equal(clips.digit_labels(index), mnist.labels(which.flatten()).view_as(which))
        digits = mnist.images(which.flatten())[:, 0].view(2, 2, DIGIT, DIGIT)
        frames = clips.images(index)[:, :, 0]
        corners = clips.corners(index)
        for n in range(2):
            for t in range(6):
                canvas = torch.zeros(2, 64, 64, dtype=torch.uint8)
                for d in range(2):
                    x, y = corners[n, d, t].tolist()
                    canvas[d, y : y + DIGIT, x : x + DIGIT] = digits[n, d]
                assert torch.equal(frames[n, t], canvas.amax(0)), (split, n, t)


@needs_mnist
def test_train_and_test_clips_use_disjoint_digit_images(data_root):
    """Train clips draw from MNIST's training images, test clips from its test images: no test clip
    shows a digit image a train clip can show."""
    train = build_dataset(section(data_root, frames=2), 0)
    test = build_dataset(section(data_root, frames=2, split="test"), 0)
    assert train.digit_images.shape[0] == 60_000 and test.digit_images.shape[0] == 10_000
    train_keys = {hash(bytes(im.flatten().tolist())) for im in train.digit_images}
    shown = test.digit_images[test.digit_indices(torch.arange(500)).flatten()]
    assert not any(hash(bytes(im.flatten().tolist())) in train_keys for im in shown)


@pytest.mark.parametrize("override, message", [
    ("dataset.frames=0", "dataset.frames=0 is not allowed: expected an integer >= 1 and <= 100"),
    ("dataset.digits=10", "dataset.digits=10 is not allowed: expected an integer >= 1 and <= 3"),
    ("dataset.image_size=7", "dataset.image_size=7 is not allowed for moving_mnist: choose 8, 16, 32 or 64 "
                             "(the 64 px canvas area-averaged)"),
    ("dataset.binarize=static", "dataset.binarize=static is not allowed for moving_mnist: its 1,000,000 clips are "
                                "rendered when asked for, not held; use dataset.binarize=dynamic or none"),
])
def test_bad_keys_are_one_line_errors(override, message):
    (cfg,) = compose_jobs("train", ["dataset=moving_mnist", "model=video_vae", override], multirun=False)
    with pytest.raises(ConfigError) as raised:
        validate_train(cfg)
    assert str(raised.value) == message


def test_the_cli_refuses_a_bad_key_in_one_line(tmp_path):
    result = genlab("train", "dataset=moving_mnist", "model=video_vae", "dataset.digits=10", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "genlab train: error: dataset.digits=10 is not allowed: expected an integer >= 1 and <= 3"]
