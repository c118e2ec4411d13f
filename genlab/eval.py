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

The work is in genlab/metrics/evaluation.py; this module is the command line: settings checked before
any work (sizes that cannot fit in memory, or nll's n·k beyond MAX_DECODER_PASSES, once the
checkpoint says the image size), a rich table, one-line errors.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.compose import compose_jobs, config_dir, only_inspects, parse_command_line
from genlab.config import ConfigError, validate_eval, validate_hardware
from genlab.errors import UserError


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on {result['dataset']}, step {result['step']}", title_justify="left")
    for column in ("metric", "value", "noise floor", "settings"):
        table.add_column(column)
    rows = {
        "nll": lambda m: [("neg. ELBO (nats/image)", m["neg_elbo_nats"], None), ("IWAE NLL bound (nats/image)", m["iwae_nll_nats"], None)],
        "fid": lambda m: [("FID (classifier features)", m["fid"], m["noise_floor"])],
        "kid": lambda m: [("KID (classifier features)", f"{m['kid']:.4g} ± {m['kid_std']:.2g}", m["noise_floor"])],
        "pr": lambda m: [("precision", m["precision"], m["noise_floor_precision"]), ("recall", m["recall"], m["noise_floor_recall"])],
        "accuracy": lambda m: [("class accuracy", m["accuracy"], None)],
        "mig": lambda m: [("MIG", m["mig"], None)],
        "shapes": lambda m: [(f"{name} {'row draws it' if 'own_shape' in m else 'share'}", value, None)
                             for name, value in m.get("own_shape", m.get("share", {})).items()],
        "inception_fid": lambda m: [("Inception FID", m["inception_fid"], m.get("noise_floor"))],
    }
    settings = {
        "nll": lambda m: f"k={m['k']}, n={m['n']}, binarization: {m['binarization']}" + (" (grey levels!)" if "note" in m else ""),
        "fid": lambda m: f"n={m['n']}; floor: n train vs test; classifier {100 * m['classifier']['test_accuracy']:.2f}% test acc.",
        "kid": lambda m: f"{m['subsets']} subsets of {m['subset_size']}",
        "pr": lambda m: f"k={m['k']}, n={m['n']}",
        "accuracy": lambda m: f"{m['per_class_n']} per class: " + " ".join(f"{a:.2f}" for a in m["per_class"]),
        "mig": lambda m: f"{m['points']} points, {m['bins']} bins",
        "shapes": lambda m: f"n={m['n']}, nearest of 737,280 real images; mean dist² {m['mean_dist_sq']:.2f}",
        "inception_fid": lambda m: f"n={m['n']} vs n test; floor: even vs odd test images, n/2 each; {m['weights']}",
    }
    fmt = lambda v: "" if v is None else v if isinstance(v, str) else f"{v:.4g}"  # noqa: E731
    for name in result["computed"]:
        metric = result["metrics"][name]
        for i, (label, value, floor) in enumerate(rows[name](metric)):
            table.add_row(label, fmt(value), fmt(floor), settings[name](metric) if i == 0 else "")
    Console().print(table)
    print(result["path"])


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from omegaconf.errors import MissingMandatoryValue

    from genlab.metrics.evaluation import evaluate
    from genlab.runtime import setup_device

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        device = setup_device(plain["hardware"])
        print_table(evaluate(plain["ckpt"], plain, plain["metrics"], device))
    except MissingMandatoryValue:
        sys.exit("genlab eval: error: ckpt is required: genlab eval ckpt=outputs/<run>/checkpoints/last.pt")
    except UserError as e:
        sys.exit(f"genlab eval: error: {e}")


def run(args: list[str]) -> None:
    """`genlab eval ARGS`: check the settings first, then hand ARGS to the Hydra app."""
    parsed = parse_command_line(args)
    if not only_inspects(parsed):
        try:
            for cfg in compose_jobs(parsed.config_name or "eval", parsed.overrides, parsed.multirun, parsed.config_dir):
                validate_eval(cfg, "", "metrics")
                validate_hardware(cfg)
        except ConfigError as e:
            sys.exit(f"genlab eval: error: {e}")
    sys.argv = [sys.argv[0], *args]
    _app()
