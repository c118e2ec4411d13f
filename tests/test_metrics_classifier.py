"""The domain classifier's cache, and FID in its features reacting to corrupted images."""

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from genlab.metrics.classifier import cache_path, load_or_train, predict
from genlab.metrics.frechet import fid
from genlab.metrics.splits import split_data

torch.set_num_threads(1)  # the test machine's cores are shared; more threads only contend

SHAPES = {"name": "shapes", "image_size": 16, "binarize": "none"}
RECIPE = {"width": 8, "features": 32, "dropout": 0.0, "steps": 100, "batch_size": 64, "lr": 3e-3, "seed": 0}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    network, report = load_or_train(SHAPES, RECIPE, torch.device("cpu"), cache)
    return network, report, cache


def test_classifier_is_cached_by_dataset_and_recipe(classifier):
    network, report, cache = classifier
    path = cache_path(cache, SHAPES, RECIPE)
    assert report["path"] == str(path) and path.is_relative_to(cache) and not report["cached"]
    test = split_data(SHAPES, "test")
    index = torch.arange(test.num_images)
    correct = predict(network, test.images(index).float() / 255, 1000)[1] == test.labels(index)
    assert report["test_images"] == 10_000 and report["test_accuracy"]["overall"] == correct.double().mean().item()
    assert report["test_accuracy"]["per_class"][2] == correct[test.labels(index) == 2].double().mean().item()
    assert report["test_accuracy"]["overall"] > 0.4  # 3 classes; 100 steps at 16 px learn some
    again, again_report = load_or_train(SHAPES, RECIPE, torch.device("cpu"), cache)
    assert again_report["cached"] and again_report["test_accuracy"] == report["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), again.state_dict().values()))
    # Where the files are and the binarization do not change the images; their size and the recipe do.
    assert cache_path(cache, {**SHAPES, "binarize": "static", "root": "/elsewhere"}, RECIPE) == path
    assert cache_path(cache, {**SHAPES, "image_size": 32}, RECIPE) != path
    assert cache_path(cache, SHAPES, {**RECIPE, "steps": 101}) != path


def test_a_corrupt_cached_classifier_is_trained_again(tmp_path, caplog):
    recipe = {**RECIPE, "steps": 2}
    path = cache_path(tmp_path, SHAPES, recipe)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    _, report = load_or_train(SHAPES, recipe, torch.device("cpu"), tmp_path)
    assert not report["cached"] and "unusable" in caplog.text
    assert load_or_train(SHAPES, recipe, torch.device("cpu"), tmp_path)[1]["cached"]


def test_fid_is_near_zero_for_real_images_and_rises_with_blur_and_noise(classifier):
    network = classifier[0]
    test = split_data(SHAPES, "test").images(torch.arange(1000)).float() / 255
    train = split_data(SHAPES, "train").images(torch.arange(1000)).float() / 255
    embed = lambda images: predict(network, images.clamp(0, 1), 500)[0]  # noqa: E731
    reference = embed(test)
    floor = fid(reference, embed(train))
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(0))
    blurred = [fid(reference, embed(gaussian_blur(train, 9, sigma))) for sigma in (0.5, 1.0, 2.0)]
    noisy = [fid(reference, embed(train + std * noise)) for std in (0.1, 0.2, 0.4)]
    assert blurred == sorted(blurred) and noisy == sorted(noisy)
    assert min(blurred[0], noisy[0]) > 3 * floor
    assert max(blurred[-1], noisy[-1]) > 30 * floor
