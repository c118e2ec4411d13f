"""genlab eval: metrics of a checkpoint, printed as a table and written to eval.json beside it.

    nll            VAE: test-set negative ELBO and IWAE NLL bound with k samples, nats per image
                   (genlab/metrics/likelihood.py), on the first n test images, binarized as the
                   model's training data were (one Bernoulli draw from `seed`; stated in the output)
    fid kid pr     FID, KID and precision/recall (k = 3) in the domain classifier's features
                   (genlab/metrics/frechet.py, classifier.py): n generated images vs the first n
                   test images, and the noise floor: the first n train images vs the same test images
    accuracy       cgan: how often the classifier recognises a sample of class c as c, on n // C
                   samples per class, per class and overall
    mig            VAE on shapes: MIG of the mean representation (genlab/metrics/disentanglement.py)
    shapes         any model on shapes: which shape each sample draws, by its nearest real image
                   (genlab/metrics/shapes.py): per class row, or the share of each shape
    inception_fid  FID in Inception-v3 features, protocol of Lucic et al. 2018 (genlab/metrics/inception.py), and
                   its noise floor: the FID between the even- and odd-indexed halves of the test images

Models of clips (genlab/metrics/video.py; nll then reports nats per clip and per frame):

    frame_fid      FID in the features of the classifier of the clips' objects, n·T generated frames
                   vs the frames of the first n test clips; floor: n train clips
    identity       whether the objects a classifier names in each frame stay the same through a clip
                   (persistence and Fleiss' κ), beside real and frame-shuffled test clips
    motion         the objects' speed (mean, W₁ to the test clips') and the share of wall contacts
                   that bounce, beside the test clips'

Each metric is one entry of genlab/metrics/registry.py (what it needs, how it runs, its table rows);
the shared work is in genlab/metrics/evaluation.py; this module is the command line: settings checked before
any work (sizes that cannot fit in memory, or nll's n·k beyond registry.MAX_DECODER_PASSES, once the
checkpoint says the image size), a rich table, one-line errors. `sample_steps=K` decodes a model
whose decode is an iterative solve (diffusion) with K solver steps instead of its checkpoint's own
(genlab/models/base.py, set_sample_steps); eval.json records the steps and NFE with each metric that
reads generated images.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.wrapper import check_jobs, reports_errors, run_command
from genlab.config.checks import require
from genlab.config.compose import config_dir
from genlab.config.validate import validate_eval, validate_hardware


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from genlab.metrics.registry import METRICS

    title = f"{result['model']} on {result['dataset']}, step {result['step']}"
    decoded = [result["metrics"][name] for name in result["computed"] if "sample_steps" in result["metrics"][name]]
    if decoded:  # a family with solver steps: the figures hold at these only
        title += f", sample_steps {decoded[0]['sample_steps']} (NFE {decoded[0]['nfe']})"
    table = Table(title=title, title_justify="left")
    for column in ("metric", "value", "noise floor", "settings"):
        table.add_column(column)
    fmt = lambda v: "" if v is None else v if isinstance(v, str) else f"{v:.4g}"  # noqa: E731
    for name in result["computed"]:
        entry, metric = METRICS[name], result["metrics"][name]
        for i, (label, value, floor) in enumerate(entry.rows(metric)):
            table.add_row(label, fmt(value), fmt(floor), entry.settings(metric) if i == 0 else "")
    Console().print(table)
    print(result["path"])


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
@reports_errors("eval", required="genlab eval ckpt=outputs/<run>/checkpoints/last.pt")
def _app(cfg: DictConfig) -> None:
    from genlab.metrics.evaluation import evaluate
    from genlab.training.runtime import setup_device

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    device = setup_device(plain["hardware"])
    print_table(evaluate(plain["ckpt"], plain, plain["metrics"], device, plain["hardware"]["compile"]))


def check(cfg: DictConfig) -> None:
    """ConfigError for the first bad evaluation setting or hardware key."""
    validate_eval(cfg, "", "metrics")
    if cfg.sample_steps is not None:  # whether the checkpoint's family has solver steps is known once it is loaded
        require(cfg, "sample_steps", "int", low=1)
    validate_hardware(cfg)


def run(args: list[str]) -> None:
    """`genlab eval ARGS`: check the settings first, then hand ARGS to the Hydra app."""
    run_command("eval", _app, args, check_jobs("eval", check, sweeps=True))
