"""The work of each `genlab eval` metric: Evaluation (genlab/metrics/evaluation.py) → its eval.json
section. genlab/metrics/registry.py names each one in its entry, with what it needs and how it reports;
heavy imports stay inside the functions, since validation reads the registry before any work.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from genlab.errors import UserError


def measure_fid(run) -> dict:
    from genlab.metrics.frechet import fid

    test = run.features("test")
    return {"fid": fid(test, run.features("generated")), "noise_floor": fid(test, run.features("train")),
            "n": run.n, "seed": run.settings["seed"], "classifier": run.classifier_note(), **run.generation}


def measure_kid(run) -> dict:
    import torch

    from genlab.metrics.frechet import kid

    size = min(run.settings["kid_subset_size"], run.n)
    subsets = run.settings["kid_subsets"]
    test = run.features("test")
    value, std = kid(test, run.features("generated"), subsets, size, torch.Generator().manual_seed(run.settings["seed"]))
    floor, floor_std = kid(test, run.features("train"), subsets, size, torch.Generator().manual_seed(run.settings["seed"]))
    return {"kid": value, "kid_std": std, "noise_floor": floor, "noise_floor_std": floor_std, "subsets": subsets,
            "subset_size": size, "n": run.n, "seed": run.settings["seed"], "classifier": run.classifier_note()}


def measure_pr(run) -> dict:
    from genlab.metrics.frechet import PR_NEIGHBOURS, precision_recall

    test = run.features("test")
    precision, recall = precision_recall(test, run.features("generated"))
    floor_precision, floor_recall = precision_recall(test, run.features("train"))
    return {"precision": precision, "recall": recall, "noise_floor_precision": floor_precision,
            "noise_floor_recall": floor_recall, "k": PR_NEIGHBOURS, "n": run.n, "seed": run.settings["seed"],
            "classifier": run.classifier_note()}


def measure_accuracy(run) -> dict:
    import torch

    from genlab.metrics.classifier import accuracy

    classes = run.model.num_classes
    per_class = run.n // classes
    if per_class == 0:
        raise UserError(f"n={run.n} is below the {classes} classes: pass n>={classes}")
    labels = torch.arange(classes).repeat_interleave(per_class)
    _, predicted = run.classify(run.generated(labels))
    result = accuracy(predicted, labels, classes)
    return {"accuracy": result["overall"], "per_class": result["per_class"], "per_class_n": per_class,
            "seed": run.settings["seed"], "classifier": run.classifier_note(),
            "classifier_per_class_test_accuracy": run.classifier()[1]["test_accuracy"]["per_class"]}


def measure_nll(run) -> dict:
    import torch

    from genlab.data.batches import binarize as binarize_images
    from genlab.data.batches import derived_seed
    from genlab.metrics import likelihood
    from genlab.metrics.likelihood import nll_bounds
    from genlab.metrics.progress import progress_bar

    images = run.real_images("test")
    binarize = run.dataset.get("binarize", "none")
    note = None
    if binarize != "none":
        draw = torch.Generator().manual_seed(derived_seed("eval binarization", run.settings["seed"]))
        images = binarize_images(images, draw)
        binarization = f"one Bernoulli draw of the test images, seed {run.settings['seed']} (training: {binarize})"
    else:
        binarization = "none"
        if run.model.binary_likelihood and bool(((images > 0) & (images < 255)).any()):
            note = (f"the test images have grey levels, over which the model's {run.model.likelihood} likelihood is "
                    "not a normalised distribution: these nats compare only with each other, not with binarized-data results")
    k = run.settings["k"]
    generator = torch.Generator().manual_seed(run.settings["seed"])
    frames = math.prod(run.model.image_shape[:-3])  # a clip's frames; 1 for an image
    per_clip = {"decode_batch": max(1, likelihood.DECODE_BATCH // frames)} if frames > 1 else {}
    with progress_bar(f"nll (k={k})", run.n) as advance:
        bounds = nll_bounds(run.model, images.to(run.device).float().div(255), k, generator, run.batch_size,
                            progress=advance, **per_clip)
    if frames > 1:
        bounds.update({f"{key}_per_frame": value / frames for key, value in bounds.items()}, frames=frames)
    return {**bounds, "k": k, "n": run.n, "likelihood": run.model.likelihood, "binarization": binarization,
            **({"note": note} if note else {}), "seed": run.settings["seed"]}


def measure_mig(run) -> dict:
    import torch

    from genlab.data import dataset_class
    from genlab.metrics.disentanglement import MIG_BINS, MIG_POINTS, mean_codes, mig

    codes, factors = mean_codes(run.model.encode, run.split("train"), MIG_POINTS,
                                torch.Generator().manual_seed(run.settings["seed"]), run.batch_size, run.device)
    try:
        result = mig(codes, factors, MIG_BINS)
    except ValueError as e:
        raise UserError(f"metric mig: {e}") from None
    names = dataset_class(run.dataset).factor_names
    return {"mig": result["mig"], "per_factor": dict(zip(names, result["per_factor"])), "points": MIG_POINTS,
            "bins": MIG_BINS, "representation": "encoder mean", "seed": run.settings["seed"]}


def measure_shapes(run) -> dict:
    import torch

    from genlab.metrics.shapes import shape_shares

    classes = run.model.num_classes
    labels = torch.arange(classes).repeat_interleave(run.n // classes) if classes else None
    images = run.generated(labels)
    shares = shape_shares(images.to(run.device).float().div(255), labels)  # the search runs on the eval's device
    return {**shares, "n": len(images), "seed": run.settings["seed"]}


def measure_inception_fid(run) -> dict:
    from pathlib import Path

    from genlab.metrics.classifier import image_settings
    from genlab.metrics.inception import (PREPROCESSING, find_weights, inception_fid, make_metric, noise_floor,
                                         real_stats_path, weights_id)
    from genlab.metrics.progress import progress_bar

    weights = find_weights(run.settings["inception"]["weights"])
    metric = make_metric(weights).to(run.device)
    stats = real_stats_path(Path(run.settings["cache_dir"]).expanduser(), image_settings(run.dataset), run.n, weights)
    size = run.settings["inception"]["batch_size"]
    with progress_bar("inception features", 2 * run.n) as advance:
        value, cached = inception_fid(
            metric, lambda: (batch.to(run.device) for batch in run.real_images("test").split(size)),
            lambda: (g.to(run.device) for g in run.generated().split(size)), stats, advance)
    return {"inception_fid": value, "noise_floor": noise_floor(stats), "noise_floor_n": run.n // 2,
            "n": run.n, "seed": run.settings["seed"], "protocol": "Lucic et al. 2018",
            "preprocessing": PREPROCESSING, "weights": weights_id(weights), "real_stats": str(stats),
            "real_stats_cached": cached, **run.generation}


def measure_clips(name: str) -> Callable[..., dict]:
    """The run of a clip metric of genlab/metrics/video.py, imported when it runs."""
    def run(evaluation) -> dict:
        from genlab.metrics import video

        return getattr(video, name)(evaluation)
    return run
