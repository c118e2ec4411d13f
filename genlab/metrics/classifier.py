"""The domain classifier: a small CNN per dataset, trained once and cached.

Its penultimate features (a ReLU layer of `features` units) are the embedding for FID, KID and
precision/recall, the usual practice on MNIST-like data where Inception-v3's ImageNet features fit
poorly; its predictions give a cgan's conditional accuracy. Its test accuracy is reported with every
number it feeds, so a user can judge the embedding.

Network: genlab.models.nets.ConvEncoder (4×4 stride-2 convolutions with BatchNorm and ReLU, `width`
channels doubling per layer) → linear → ReLU (the features) → dropout → linear → class logits.
Training: cross-entropy, Adam with a one-cycle learning-rate schedule (Smith & Topin 2019, 15 %
warm-up, peak `lr`), `steps` batches of `batch_size` from the train split in shuffled epochs, every
random draw from `seed`: the same recipe gives the same weights on the same machine and software.

Cache: <cache_dir>/classifiers/<dataset>-<hash>.pt (the evaluation setting `cache_dir`, by default
$GENLAB_CACHE_DIR or ~/.cache/genlab/cache, the folder CelebA's decoded images go to), where <hash>
is the SHA-1 of the recipe together with the dataset settings that change its images (everything in `dataset` but its class, where the files are, the
split and binarization). The file holds the weights, the recipe, the test accuracy (overall and per
class) and the training time; it is plain data, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.batches import ShuffledBatches, to_batch
from genlab.errors import UserError
from genlab.models.nets import ConvEncoder

log = logging.getLogger("genlab")

RECIPE_VERSION = 1  # bump when the network or training code changes what a recipe produces
NOT_IMAGE_SETTINGS = ("_target_", "root", "download", "split", "binarize", "cache_dir")


class DomainClassifier(nn.Module):
    def __init__(self, image_shape, num_classes: int, width: int, features: int, dropout: float):
        super().__init__()
        self.body = ConvEncoder(image_shape, width, features, norm=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def image_settings(dataset: dict) -> dict:
    """The dataset settings that change its images (a cache key)."""
    return {k: v for k, v in dataset.items() if k not in NOT_IMAGE_SETTINGS}


def cache_path(cache_dir: str | Path, dataset: dict, recipe: dict) -> Path:
    text = json.dumps({"version": RECIPE_VERSION, "dataset": image_settings(dataset), "recipe": recipe}, sort_keys=True)
    return Path(cache_dir).expanduser() / "classifiers" / f"{dataset['name']}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.pt"


def _build(image_shape, num_classes: int, recipe: dict) -> DomainClassifier:
    return DomainClassifier(image_shape, num_classes, recipe["width"], recipe["features"], recipe["dropout"])


@torch.no_grad()
def predict(classifier: DomainClassifier, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, features) and predicted classes (N,) of images (N, C, H, W) in [0, 1]."""
    device = next(classifier.parameters()).device
    features, classes = [], []
    for part in images.split(batch_size):
        f = classifier.features(part.to(device).float())
        features.append(f.cpu())
        classes.append(classifier.head(f).argmax(1).cpu())
    return torch.cat(features), torch.cat(classes)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Overall accuracy and the accuracy within each true class (None for a class with no images)."""
    correct = (predicted == labels).double()
    per_class = [float(correct[labels == c].mean()) if (labels == c).any() else None for c in range(num_classes)]
    return {"overall": float(correct.mean()), "per_class": per_class}


def train_classifier(train, test, recipe: dict, device: torch.device) -> tuple[DomainClassifier, dict]:
    """Train on ImageData `train` per `recipe`; report accuracy on `test`."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe["seed"])
        classifier = _build(train.image_shape, train.num_classes, recipe).to(device)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=recipe["lr"])
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe["lr"], total_steps=recipe["steps"], pct_start=0.15)
        batches = ShuffledBatches(train.num_images, recipe["batch_size"], recipe["seed"])
        classifier.train()
        for _ in range(recipe["steps"]):
            batch = to_batch(train, batches.next_index(), device)
            loss = F.cross_entropy(classifier(batch.images), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    train_s = time.perf_counter() - start
    classifier.eval()
    index = torch.arange(test.num_images)
    _, predicted = predict(classifier, test.images(index).float().div(255), 1000)
    report = {"test_accuracy": accuracy(predicted, test.labels(index).cpu(), test.num_classes),
              "test_images": test.num_images, "train_s": round(train_s, 1), "device": str(device)}
    return classifier, report


def load_or_train(dataset: dict, recipe: dict, device: torch.device, cache_dir: str | Path) -> tuple[DomainClassifier, dict]:
    """The cached classifier for this dataset and recipe, trained first if there is none.

    Returns the network (eval mode, on `device`) and its report: test accuracy, training time, path.
    """
    from genlab.metrics.splits import split_data
    from genlab.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = cache_path(cache_dir, dataset, recipe)
    if path.is_file():
        try:
            state = load_checkpoint(path)
            classifier = _build(state["image_shape"], state["num_classes"], recipe)
            classifier.load_state_dict(state["weights"])
            return classifier.to(device).eval(), {**state["report"], "path": str(path), "cached": True}
        except (CheckpointError, KeyError, RuntimeError) as e:
            log.warning(f"the cached classifier {path} is unusable ({str(e)[:120]}); training it again")
    train, test = split_data(dataset, "train"), split_data(dataset, "test")
    if train.num_classes < 2:
        raise UserError(f"the {dataset['name']} dataset as configured has {train.num_classes} class, so no domain "
                        "classifier can be trained for fid/kid/pr: give it classes (e.g. dataset.attributes=[Male]) "
                        "or use metrics=[inception_fid]")
    log.info(f"training the {dataset['name']} domain classifier once ({recipe['steps']} steps); it is cached at {path}")
    classifier, report = train_classifier(train, test, recipe, device)
    log.info(f"{dataset['name']} classifier: {100 * report['test_accuracy']['overall']:.2f}% test accuracy, "
             f"trained in {report['train_s']:.0f} s")
    try:
        save_checkpoint({"weights": classifier.state_dict(), "recipe": recipe, "image_shape": list(train.image_shape),
                         "num_classes": train.num_classes, "report": report}, path)
    except OSError as e:
        raise UserError(f"cannot write the classifier cache {path} ({e.strerror}): set cache_dir (or GENLAB_CACHE_DIR) to a writable folder") from None
    return classifier, {**report, "path": str(path), "cached": False}
