"""The procedural dSprites renderer: size, factors, determinism, known pixels."""

import torch

from genlab.data.shapes import FACTOR_SIZES, NUM_IMAGES, Shapes, factor_classes, factor_values, render


def test_length_and_factor_ranges():
    assert NUM_IMAGES == 737_280 == Shapes().num_images
    classes = factor_classes(torch.arange(NUM_IMAGES))
    assert classes.min(0).values.tolist() == [0, 0, 0, 0, 0]
    assert (classes.max(0).values + 1).tolist() == list(FACTOR_SIZES)
    values = factor_values(classes)
    assert values[:, 1].min() == 0.5 and values[:, 1].max() == 1.0  # scale in [0.5, 1]
    assert values[:, 2].min() == 0 and values[:, 2].max() < 2 * torch.pi  # orientation in [0, 2π)
    assert values[:, 3:].min() == 0 and values[:, 3:].max() == 1  # positions in [0, 1]
    # Every image is a distinct factor combination: the decomposition inverts.
    index = torch.zeros(NUM_IMAGES, dtype=torch.long)
    for column, size in enumerate(FACTOR_SIZES):
        index = index * size + classes[:, column]
    assert torch.equal(index, torch.arange(NUM_IMAGES))


def test_known_index_to_factors():
    # shape heart (2), scale class 3, orientation class 20, pos_x 5, pos_y 25
    index = 2 * 245_760 + 3 * 40_960 + 20 * 1024 + 5 * 32 + 25
    assert factor_classes(torch.tensor([index])).tolist() == [[2, 3, 20, 5, 25]]
    assert Shapes().labels(torch.tensor([index])).tolist() == [2]


def test_known_pixel_pattern():
    # Index 0: the smallest unrotated square, centred on pixel corner (16, 16) of the 64 px image.
    image = render(torch.tensor([0]))[0, 0]
    assert image.dtype == torch.uint8 and set(image.unique().tolist()) == {0, 255}
    on = (image == 255).nonzero()
    rows, cols = on[:, 0], on[:, 1]
    # half side = 0.8 · 0.35 · 0.5 · 32 px = 4.48 px → pixels 12..19 in both directions
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (12, 19, 12, 19)
    assert on.shape[0] == 64


def test_rendering_is_deterministic_and_batch_independent():
    index = torch.randint(0, NUM_IMAGES, (50,), generator=torch.Generator().manual_seed(1))
    whole = render(index)
    assert torch.equal(whole, render(index))
    assert torch.equal(whole[7:8], render(index[7:8]))


def test_downscaled_sizes_average_the_native_rendering():
    index = torch.arange(0, NUM_IMAGES, 9_973)
    native = render(index).float()
    small = render(index, 32).float()
    assert small.shape[-1] == 32
    pooled = torch.nn.functional.avg_pool2d(native, 2)
    assert (small - pooled).abs().max() <= 0.5
    # Each shape covers a sensible part of the image at every scale.
    coverage = (native > 0).float().mean((1, 2, 3))
    assert coverage.min() > 0.005 and coverage.max() < 0.2
