"""Metrics of one checkpoint: the work behind `genlab eval` and `eval.at_end` (see genlab/commands/eval.py).

Generated images are quantized to 8 bits (what a PNG of them holds) before any embedding, so both
sets are seen at the same precision. eval.json keeps each metric with the settings that produced it;
a later run on the same checkpoint step adds or replaces metrics, and `summary` holds flat scalars
for tables (the sweep summary reads them).

A model whose decode is an iterative solve (diffusion: `sample_steps`, genlab/models/base.py) makes
different images at different solver steps, so a figure of it means something only with its steps:
`settings["sample_steps"]` (null: the checkpoint's own) is set on the model before any work, each
metric that reads generated images records `sample_steps` and `nfe` in its section, the summary
holds `<metric>_sample_steps` beside its figures, and a call at other steps than a figure it
replaces or keeps in eval.json says so on stderr. `check_sizes` refuses, before any metric runs, sizes
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

from genlab.config.checks import memory_budget, require_fits
from genlab.errors import UserError
from genlab.files import write_text_atomically
from genlab.images import to_uint8
from genlab.metrics import registry
from genlab.metrics.progress import progress_bar

log = logging.getLogger("genlab")

def applicable(model, dataset: dict) -> list[str]:
    """The metrics `metrics=auto` runs for a model (or its family's class) on the dataset a config
    section describes."""
    from genlab.data import dataset_class

    return registry.applicable(model, dataset_class(dataset))


def check_fits(metrics: list[str], model, dataset: dict) -> None:
    """UserError for the first metric the model or the dataset a config section describes cannot give."""
    from genlab.data import dataset_class

    registry.check_fits(metrics, model, dataset_class(dataset), dataset["name"])


# The feasibility of an evaluation's sizes (see genlab.config.checks.require_fits), checked before any work.
# fid, kid, pr and accuracy read a domain classifier trained on classifier.steps × batch_size images
# (the default 2,000 × 128 = 2.6·10⁵); the bound is ~4,000× the default: days of CPU. Each metric's
# own bounds are in its registry entry (genlab/metrics/registry.py).
MAX_CLASSIFIER_IMAGES = 10**9


def check_sizes(names: list[str], settings: dict, image_shape, prefix: str = "") -> None:
    """ConfigError, in one line with the largest value that fits, when evaluating `names` at these
    settings (n, k, batch sizes; keys at `prefix`) would hold more than this machine's memory (a
    lower bound: the images kept, one batch, and what the metrics' entries add), or a metric's work
    exceeds its bound (nll's decoder passes, kid's kernel entries, the classifier's training)."""
    if not names:
        return
    values = math.prod(image_shape)
    held = registry.held_bytes_per_value(names)
    sizes = {"n": settings["n"], "batch_size": settings["batch_size"]}
    if registry.uses_classifier(names):
        classifier = {"classifier.steps": settings["classifier"]["steps"],
                      "classifier.batch_size": settings["classifier"]["batch_size"]}
        require_fits("the domain classifier's training", classifier, lambda s: math.prod(s.values()),
                     (MAX_CLASSIFIER_IMAGES, f"the {MAX_CLASSIFIER_IMAGES:.0e} genlab allows"), "images", prefix)
    sizes.update(registry.work_limits(names, settings, prefix))

    def need(s: dict[str, int]) -> int:
        return (s["n"] * held + s["batch_size"] * 4) * values + registry.extra_bytes(s)

    shape = "×".join(map(str, image_shape))
    require_fits(f"metrics={','.join(names)} on {shape} images", sizes, need, memory_budget(), prefix=prefix)


class Evaluation:
    """One checkpoint's model, data and settings; each metric method returns its eval.json section."""

    def __init__(self, model, model_name: str, dataset: dict, settings: dict, device: torch.device):
        self.model, self.model_name, self.dataset = model, model_name, dataset
        self.settings, self.device = settings, device
        self.n, self.batch_size = settings["n"], settings["batch_size"]
        self._splits, self._classifier, self._features = {}, None, {}
        self.generation: dict = {}  # the cost of the last `generated`: network evaluations, ms per image
        self.shared: dict = {}      # what several metrics compute once (the clip metrics' Clips, genlab/metrics/video.py)

    @classmethod
    def from_checkpoint(cls, state: dict, settings: dict, device: torch.device) -> Evaluation:
        """The model of a loaded checkpoint, rebuilt on `device` in eval mode."""
        from genlab.models import model_from_checkpoint

        config = state["config"]
        dataset = config["dataset"]
        if settings["data_root"] is not None and "root" in dataset:
            dataset = {**dataset, "root": settings["data_root"]}
        from genlab.models.base import set_sample_steps

        model = set_sample_steps(model_from_checkpoint(state, device), settings.get("sample_steps"))
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
        images, start_s = [], time.perf_counter()
        with progress_bar("generating", total) as advance:
            for start in range(0, total, self.batch_size):
                count = min(self.batch_size, total - start)
                if labels is None:
                    batch = self.model.sample(count, generator)
                else:
                    batch = self.model.decode(self.model.prior(count, generator), labels[start : start + count])
                images.append(to_uint8(batch.float().cpu()))
                advance(count)
        ms_per_image = 1000 * (time.perf_counter() - start_s) / total
        self.generation = {"nfe": getattr(self.model, "nfe", 1), "ms_per_image": round(ms_per_image, 3),
                           "generation_device": str(self.device), "generation_batch_size": self.batch_size}
        return torch.cat(images)

    def decode_settings(self) -> dict:
        """What a figure of generated images depends on beyond the eval's settings: the solver steps
        and network evaluations per image of a model with `sample_steps`; {} for a one-pass family."""
        steps = getattr(self.model, "sample_steps", None)
        return {} if steps is None else {"sample_steps": steps, "nfe": getattr(self.model, "nfe", 1)}

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


def eval_path(ckpt: Path) -> Path:
    """eval.json beside the checkpoint (<stem>.eval.json for a checkpoint other than last.pt)."""
    return ckpt.parent / ("eval.json" if ckpt.stem == "last" else f"{ckpt.stem}.eval.json")


def note_other_steps(previous: dict[str, dict], results: dict[str, dict], path: Path) -> None:
    """Say on stderr which figures of eval.json were decoded at other solver steps than this call's:
    those it replaces, and those it keeps beside its own (a table of both mixes two settings)."""
    steps = {section["sample_steps"] for section in results.values() if "sample_steps" in section}
    for name, section in previous.items():
        old = section.get("sample_steps")
        if old is None or not steps or old in steps:
            continue
        new = ", ".join(map(str, sorted(steps)))
        if name in results:
            log.info(f"{name} at sample_steps {new} replaces the figure at sample_steps {old} in {path}")
        else:
            log.warning(f"{path} keeps {name} at sample_steps {old} beside this call's figures at sample_steps {new}")


def evaluate(ckpt: str | Path, settings: dict, metrics, device: torch.device, compile_nets: bool = False) -> dict:
    """Run `metrics` ("auto" or a list) on a checkpoint; returns eval.json's content after writing it,
    with `path` (of eval.json) and `computed` (the metrics this call ran) added. compile_nets:
    torch.compile the model's nets first (hardware.compile; the figures do not depend on it)."""
    from genlab.training.checkpoint import load_checkpoint, resolve

    ckpt = resolve(ckpt)
    state = load_checkpoint(ckpt)
    run = Evaluation.from_checkpoint(state, settings, device)
    if compile_nets:
        from genlab.training.runtime import compile_nets as compile_model

        compile_model(run.model)
    names = applicable(run.model, run.dataset) if metrics == "auto" else list(metrics)
    check_fits(names, run.model, run.dataset)
    check_sizes(names, settings, run.model.image_shape)
    path = eval_path(ckpt)
    previous = {}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            previous = json.loads(path.read_text())
    kept = previous.get("metrics", {}) if previous.get("step") == state["step"] else {}
    decoding, results = run.decode_settings(), {}
    for name in names:
        start = time.perf_counter()
        section = registry.METRICS[name].run(run)
        if registry.METRICS[name].generates:
            section.update(decoding)
        results[name] = {**section, "wall_s": round(time.perf_counter() - start, 1)}
    note_other_steps(kept, results, path)
    merged = {**kept, **results}
    content = {"ckpt": str(ckpt.resolve()), "step": state["step"], "model": run.model_name, "dataset": run.dataset["name"],
               "summary": registry.summary(merged),
               "metrics": merged}
    write_text_atomically(path, json.dumps(content, indent=2) + "\n")
    return {**content, "path": str(path), "computed": names}
