"""Metrics of one checkpoint: the work behind `genlab eval` and `eval.at_end` (see genlab/eval.py).

Generated images are quantized to 8 bits (what a PNG of them holds) before any embedding, so both
sets are seen at the same precision. eval.json keeps each metric with the settings that produced it;
a later run on the same checkpoint step adds or replaces metrics, and `summary` holds flat scalars
for tables (the sweep summary reads them). `check_sizes` refuses, before any metric runs, sizes
whose memory or nll work cannot fit; each long stage shows its progress (genlab/metrics/progress.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch

from genlab.checks import memory_budget, require_fits
from genlab.config import METRICS
from genlab.errors import UserError
from genlab.files import write_text_atomically
from genlab.images import to_uint8
from genlab.metrics.progress import progress_bar

log = logging.getLogger("genlab")

FACTOR_DATASETS = ("shapes",)  # datasets with ground-truth factors of variation (for mig)
DATASET_METRICS = {"mig": FACTOR_DATASETS, "shapes": FACTOR_DATASETS}  # metrics that also need a kind of dataset
ANY_MODEL_METRICS = ("shapes", "inception_fid")  # need only the model's images
NOT_AUTO = ("shapes", "inception_fid")  # minutes each: asked for by name


def _fits(metric: str, model) -> bool:
    return metric in model.metrics or metric in ANY_MODEL_METRICS


def applicable(model, dataset: str) -> list[str]:
    """The metrics `metrics=auto` runs for a model on a dataset (all that fit but NOT_AUTO)."""
    return [m for m in METRICS if m not in NOT_AUTO and _fits(m, model) and dataset in DATASET_METRICS.get(m, (dataset,))]


def check_fits(metrics: list[str], model, dataset: str) -> None:
    for metric in metrics:
        if not _fits(metric, model):
            raise UserError(f"metric {metric} does not fit the checkpoint's {model.kind} (it fits "
                            f"{', '.join(m for m in METRICS if m in model.metrics)}): drop it from metrics= "
                            f"(metrics=auto picks what fits: {', '.join(applicable(model, dataset))})")
        if dataset not in DATASET_METRICS.get(metric, (dataset,)):
            raise UserError(f"metric {metric} needs ground-truth factors, which only {', '.join(FACTOR_DATASETS)} has, "
                            f"not {dataset}: drop it from metrics=")


# The feasibility of an evaluation's sizes (see genlab.checks.require_fits), checked before any work.
# Bytes per image value that a metric holds for all n images at once: float32 copies (classifier
# inputs, nll, shapes), uint8 for inception_fid; mig reads MIG_POINTS images whatever n is.
HELD_BYTES_PER_VALUE = {"inception_fid": 1, "mig": 0}
INCEPTION_INPUT_VALUES = 3 * 299 * 299
# nll costs n·k decoder passes. Burda et al. 2016 report k=5000 on MNIST's 10,000 test images
# (5·10⁷ passes); genlab runs at most 200 times that, ~18 days at the 6,558 passes/s of the default
# decoder measured on this project's 2-core CPU (see Evaluation.nll).
MAX_DECODER_PASSES = 10**10
# fid, kid, pr and accuracy read a domain classifier trained on classifier.steps × batch_size images
# (the default 2,000 × 128 = 2.6·10⁵); kid averages kid_subsets kernels of subset_size² entries
# (the default 100 × 1,000² = 10⁸). Each bound is ~4,000× and 10,000× the default: days of CPU.
CLASSIFIER_METRICS = ("fid", "kid", "pr", "accuracy")
MAX_CLASSIFIER_IMAGES = 10**9
MAX_KID_KERNEL_ENTRIES = 10**12


def check_sizes(names: list[str], settings: dict, image_shape, prefix: str = "") -> None:
    """ConfigError, in one line with the largest value that fits, when evaluating `names` at these
    settings (n, k, batch sizes; keys at `prefix`) would hold more than this machine's memory (a
    lower bound: the images kept, one batch, nll's k log-weights of an image in float64), or nll's
    decoder passes exceed MAX_DECODER_PASSES."""
    if not names:
        return
    values = math.prod(image_shape)
    held = max(HELD_BYTES_PER_VALUE.get(name, 4) for name in names)
    sizes = {"n": settings["n"], "batch_size": settings["batch_size"]}
    if "nll" in names:
        sizes["k"] = settings["k"]
        require_fits("metric nll", {"n": settings["n"], "k": settings["k"]}, lambda s: s["n"] * s["k"],
                     (MAX_DECODER_PASSES, f"the {MAX_DECODER_PASSES:.0e} genlab allows (200× Burda et al. 2016's k=5000 "
                                          "on 10,000 images; ~18 days on a 2-core CPU)"), "decoder passes", prefix)
    if set(names) & set(CLASSIFIER_METRICS):
        classifier = {"classifier.steps": settings["classifier"]["steps"],
                      "classifier.batch_size": settings["classifier"]["batch_size"]}
        require_fits("the domain classifier's training", classifier, lambda s: math.prod(s.values()),
                     (MAX_CLASSIFIER_IMAGES, f"the {MAX_CLASSIFIER_IMAGES:.0e} genlab allows"), "images", prefix)
    if "kid" in names:
        kernels = {"kid_subsets": settings["kid_subsets"], "kid_subset_size": min(settings["kid_subset_size"], settings["n"])}
        require_fits("metric kid", kernels, lambda s: s["kid_subsets"] * s["kid_subset_size"] ** 2,
                     (MAX_KID_KERNEL_ENTRIES, f"the {MAX_KID_KERNEL_ENTRIES:.0e} genlab allows"), "kernel entries", prefix)
    if "inception_fid" in names:
        sizes["inception.batch_size"] = settings["inception"]["batch_size"]

    def need(s: dict[str, int]) -> int:
        return ((s["n"] * held + s["batch_size"] * 4) * values + 8 * s.get("k", 0)
                + 4 * INCEPTION_INPUT_VALUES * s.get("inception.batch_size", 0))

    shape = "×".join(map(str, image_shape))
    require_fits(f"metrics={','.join(names)} on {shape} images", sizes, need, memory_budget(), prefix=prefix)


class Evaluation:
    """One checkpoint's model, data and settings; each metric method returns its eval.json section."""

    def __init__(self, model, model_name: str, dataset: dict, settings: dict, device: torch.device):
        self.model, self.model_name, self.dataset = model, model_name, dataset
        self.settings, self.device = settings, device
        self.n, self.batch_size = settings["n"], settings["batch_size"]
        self._splits, self._classifier, self._features = {}, None, {}

    @classmethod
    def from_checkpoint(cls, state: dict, settings: dict, device: torch.device) -> Evaluation:
        """The model of a loaded checkpoint, rebuilt on `device` in eval mode."""
        from genlab.models import model_from_checkpoint

        config = state["config"]
        dataset = config["dataset"]
        if settings["data_root"] is not None and "root" in dataset:
            dataset = {**dataset, "root": settings["data_root"]}
        model = model_from_checkpoint(state, device)
        return cls(model, config["model"]["name"], dataset, settings, device)

    # -- shared pieces -------------------------------------------------------------------------

    def split(self, name: str):
        """The train or test split, checked to hold at least n images."""
        if name not in self._splits:
            from genlab.metrics.splits import split_data

            data = split_data(self.dataset, name)
            if data.num_images < self.n:
                raise UserError(f"n={self.n} exceeds the {data.num_images:,} {name} images of {self.dataset['name']}: "
                                f"pass n<={data.num_images}")
            self._splits[name] = data
        return self._splits[name]

    def real_images(self, split: str):
        """The first n images of a split, uint8 (n, C, H, W) on the CPU."""
        return self.split(split).images(torch.arange(self.n)).cpu()

    def generated(self, labels=None):
        """Generated images, uint8 on the CPU, from the seed: n of them, or one of class `labels[i]`
        for each label (cgan)."""
        generator = torch.Generator().manual_seed(self.settings["seed"])
        total = self.n if labels is None else len(labels)
        images = []
        with progress_bar("generating", total) as advance:
            for start in range(0, total, self.batch_size):
                count = min(self.batch_size, total - start)
                if labels is None:
                    batch = self.model.sample(count, generator)
                else:
                    batch = self.model.decode(self.model.prior(count, generator), labels[start : start + count])
                images.append(to_uint8(batch.float().cpu()))
                advance(count)
        return torch.cat(images)

    def classifier(self):
        if self._classifier is None:
            from genlab.metrics.classifier import load_or_train

            self._classifier = load_or_train(self.dataset, self.settings["classifier"], self.device,
                                             self.settings["cache_dir"])
        return self._classifier

    def classify(self, images):
        from genlab.metrics.classifier import predict

        return predict(self.classifier()[0], images.float().div(255), self.batch_size)

    def features(self, which: str):
        """Classifier features of the n 'generated', 'test' or 'train' images (computed once)."""
        if which not in self._features:
            images = self.generated() if which == "generated" else self.real_images(which)
            self._features[which] = self.classify(images)[0]
        return self._features[which]

    def classifier_note(self) -> dict:
        report = self.classifier()[1]
        return {"path": report["path"], "test_accuracy": report["test_accuracy"]["overall"]}

    # -- metrics ---------------------------------------------------------------------------------

    def fid(self) -> dict:
        from genlab.metrics.frechet import fid

        test = self.features("test")
        return {"fid": fid(test, self.features("generated")), "noise_floor": fid(test, self.features("train")),
                "n": self.n, "seed": self.settings["seed"], "classifier": self.classifier_note()}

    def kid(self) -> dict:
        from genlab.metrics.frechet import kid

        size = min(self.settings["kid_subset_size"], self.n)
        subsets = self.settings["kid_subsets"]
        test = self.features("test")
        value, std = kid(test, self.features("generated"), subsets, size, torch.Generator().manual_seed(self.settings["seed"]))
        floor, floor_std = kid(test, self.features("train"), subsets, size, torch.Generator().manual_seed(self.settings["seed"]))
        return {"kid": value, "kid_std": std, "noise_floor": floor, "noise_floor_std": floor_std, "subsets": subsets,
                "subset_size": size, "n": self.n, "seed": self.settings["seed"], "classifier": self.classifier_note()}

    def pr(self) -> dict:
        from genlab.metrics.frechet import PR_NEIGHBOURS, precision_recall

        test = self.features("test")
        precision, recall = precision_recall(test, self.features("generated"))
        floor_precision, floor_recall = precision_recall(test, self.features("train"))
        return {"precision": precision, "recall": recall, "noise_floor_precision": floor_precision,
                "noise_floor_recall": floor_recall, "k": PR_NEIGHBOURS, "n": self.n, "seed": self.settings["seed"],
                "classifier": self.classifier_note()}

    def accuracy(self) -> dict:
        from genlab.metrics.classifier import accuracy

        classes = self.model.num_classes
        per_class = self.n // classes
        if per_class == 0:
            raise UserError(f"n={self.n} is below the {classes} classes: pass n>={classes}")
        labels = torch.arange(classes).repeat_interleave(per_class)
        _, predicted = self.classify(self.generated(labels))
        result = accuracy(predicted, labels, classes)
        return {"accuracy": result["overall"], "per_class": result["per_class"], "per_class_n": per_class,
                "seed": self.settings["seed"], "classifier": self.classifier_note(),
                "classifier_per_class_test_accuracy": self.classifier()[1]["test_accuracy"]["per_class"]}

    def nll(self) -> dict:
        from genlab.data.batches import binarize as binarize_images
        from genlab.data.batches import derived_seed
        from genlab.metrics.likelihood import nll_bounds

        images = self.real_images("test")
        binarize = self.dataset.get("binarize", "none")
        likelihood = self.model.likelihood
        note = None
        if binarize != "none":
            draw = torch.Generator().manual_seed(derived_seed("eval binarization", self.settings["seed"]))
            images = binarize_images(images, draw)
            binarization = f"one Bernoulli draw of the test images, seed {self.settings['seed']} (training: {binarize})"
        else:
            binarization = "none"
            if likelihood == "bernoulli" and bool(((images > 0) & (images < 255)).any()):
                note = ("the test images have grey levels, over which a Bernoulli likelihood is not a normalised "
                        "distribution: these nats compare only with each other, not with binarized-data results")
        k = self.settings["k"]
        generator = torch.Generator().manual_seed(self.settings["seed"])
        # The bound costs k·n decoder passes; channels-last convolution weights made the default conv
        # decoder 1.5× faster on this project's 2-core CPU (6,558 against 4,278 passes/s), same logits.
        self.model.decoder_ema.to(memory_format=torch.channels_last)
        with progress_bar(f"nll (k={k})", self.n) as advance:
            bounds = nll_bounds(self.model, images.to(self.device).float().div(255), k, generator, self.batch_size,
                                progress=advance)
        return {**bounds, "k": k, "n": self.n, "likelihood": likelihood, "binarization": binarization,
                **({"note": note} if note else {}), "seed": self.settings["seed"]}

    def mig(self) -> dict:
        from genlab.data.shapes import FACTOR_NAMES
        from genlab.metrics.disentanglement import MIG_BINS, MIG_POINTS, mean_codes, mig

        codes, factors = mean_codes(self.model.encode, self.split("train"), MIG_POINTS,
                                    torch.Generator().manual_seed(self.settings["seed"]), self.batch_size, self.device)
        try:
            result = mig(codes, factors, MIG_BINS)
        except ValueError as e:
            raise UserError(f"metric mig: {e}") from None
        return {"mig": result["mig"], "per_factor": dict(zip(FACTOR_NAMES, result["per_factor"])), "points": MIG_POINTS,
                "bins": MIG_BINS, "representation": "encoder mean", "seed": self.settings["seed"]}

    def shapes(self) -> dict:
        from genlab.metrics.shapes import shape_shares

        classes = self.model.num_classes
        labels = torch.arange(classes).repeat_interleave(self.n // classes) if classes else None
        images = self.generated(labels)
        shares = shape_shares(images.to(self.device).float().div(255), labels)  # the search runs on the eval's device
        return {**shares, "n": len(images), "seed": self.settings["seed"]}

    def inception_fid(self) -> dict:
        from genlab.metrics.classifier import image_settings
        from genlab.metrics.inception import (PREPROCESSING, find_weights, inception_fid, make_metric, noise_floor,
                                             real_stats_path, weights_id)

        weights = find_weights(self.settings["inception"]["weights"])
        metric = make_metric(weights).to(self.device)
        stats = real_stats_path(Path(self.settings["cache_dir"]).expanduser(), image_settings(self.dataset), self.n, weights)
        size = self.settings["inception"]["batch_size"]
        with progress_bar("inception features", 2 * self.n) as advance:
            value, cached = inception_fid(
                metric, lambda: (batch.to(self.device) for batch in self.real_images("test").split(size)),
                lambda: (g.to(self.device) for g in self.generated().split(size)), stats, advance)
        return {"inception_fid": value, "noise_floor": noise_floor(stats), "noise_floor_n": self.n // 2,
                "n": self.n, "seed": self.settings["seed"], "protocol": "Lucic et al. 2018",
                "preprocessing": PREPROCESSING, "weights": weights_id(weights), "real_stats": str(stats),
                "real_stats_cached": cached}


# eval.json's flat `summary`: (name there, metric, key in the metric's section).
SUMMARY = [("neg_elbo_nats", "nll", "neg_elbo_nats"), ("iwae_nll_nats", "nll", "iwae_nll_nats"),
           ("fid", "fid", "fid"), ("fid_noise_floor", "fid", "noise_floor"),
           ("kid", "kid", "kid"), ("kid_noise_floor", "kid", "noise_floor"),
           ("precision", "pr", "precision"), ("recall", "pr", "recall"),
           ("precision_noise_floor", "pr", "noise_floor_precision"), ("recall_noise_floor", "pr", "noise_floor_recall"),
           ("accuracy", "accuracy", "accuracy"), ("mig", "mig", "mig"), ("shapes_min_own", "shapes", "min_own_shape"), ("shapes_min_share", "shapes", "min_share"),
           ("inception_fid", "inception_fid", "inception_fid"), ("inception_fid_noise_floor", "inception_fid", "noise_floor")]


def eval_path(ckpt: Path) -> Path:
    """eval.json beside the checkpoint (<stem>.eval.json for a checkpoint other than last.pt)."""
    return ckpt.parent / ("eval.json" if ckpt.stem == "last" else f"{ckpt.stem}.eval.json")


def evaluate(ckpt: str | Path, settings: dict, metrics, device: torch.device) -> dict:
    """Run `metrics` ("auto" or a list) on a checkpoint; returns eval.json's content after writing it,
    with `path` (of eval.json) and `computed` (the metrics this call ran) added."""
    from genlab.training.checkpoint import load_checkpoint, resolve

    ckpt = resolve(ckpt)
    state = load_checkpoint(ckpt)
    run = Evaluation.from_checkpoint(state, settings, device)
    names = applicable(run.model, run.dataset["name"]) if metrics == "auto" else list(metrics)
    check_fits(names, run.model, run.dataset["name"])
    check_sizes(names, settings, run.model.image_shape)
    path = eval_path(ckpt)
    previous = {}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            previous = json.loads(path.read_text())
    kept = previous.get("metrics", {}) if previous.get("step") == state["step"] else {}
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = {**getattr(run, name)(), "wall_s": round(time.perf_counter() - start, 1)}
    merged = {**kept, **results}
    content = {"ckpt": str(ckpt.resolve()), "step": state["step"], "model": run.model_name, "dataset": run.dataset["name"],
               "summary": {name: merged[metric][key] for name, metric, key in SUMMARY if key in merged.get(metric, {})},
               "metrics": merged}
    write_text_atomically(path, json.dumps(content, indent=2) + "\n")
    return {**content, "path": str(path), "computed": names}
