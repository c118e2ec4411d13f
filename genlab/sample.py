"""genlab sample: rebuild a model from its checkpoint alone and write a PNG grid of samples.

Modes (every model's prior is z ~ N(0, I), drawn on the CPU from a generator seeded with `seed`):

    grid         n samples; a cgan's default is its class grid (row k = class k, the same z down
                 each column), `label=K` gives n samples of class K instead
    interpolate  n // steps rows; row i walks from z_a to z_b (both ~ N(0, I)) along the great circle
                     slerp(z_a, z_b; t) = sin((1 − t)Ω)/sin Ω · z_a + sin(tΩ)/sin Ω · z_b,
                     cos Ω = z_a·z_b / (|z_a||z_b|),  t = 0 … 1 in `steps` steps
                 (Shoemake 1985; White 2016, "Sampling Generative Networks": high-dimensional
                 Gaussian samples lie near a sphere, which a straight line cuts through). Row i
                 runs from sample i to sample rows + i of `mode=grid n=2·rows` with the same seed
                 (and label); for a cgan each row keeps one class (`label=K`, or one drawn per row)
    traverse     VAE only: one row per latent dimension, that dimension swept over [−3, 3] in
                 `steps` steps while the others stay at one z ~ N(0, I) (the latent-traversal
                 figure of β-VAE, Higgins et al. 2017)

The same checkpoint, options and seed give the same file, byte for byte.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from genlab.config import ConfigError, config_dir
from genlab.errors import UserError

MODES = ("grid", "interpolate", "traverse")


def default_out(ckpt: Path, mode: str, n: int, steps: int, label: int | None, seed: int) -> Path:
    """<run dir>/samples/sample_n64_seed0.png, interpolate_label2_n64_steps8_seed0.png, …"""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    parts = ["sample" if mode == "grid" else mode, f"label{label}" if label is not None else "",
             f"n{n}" if mode != "traverse" else "", f"steps{steps}" if mode != "grid" else "", f"seed{seed}"]
    return run_dir / "samples" / ("_".join(filter(None, parts)) + ".png")


def load_model(ckpt: Path):
    """The model stored in a checkpoint, on the CPU, in eval mode."""
    import torch

    from genlab.models import build_model
    from genlab.training.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)
    cfg, data = state["config"], state["data"]
    model = build_model(cfg["model"], cfg["optimizer"], data["image_shape"], data["num_classes"], torch.device("cpu"))
    model.load_state_dict(state["model"])
    model.train(False)
    return model


def write_png(images, path: Path, per_row: int) -> None:
    """Write a grid atomically: a temporary file in the same folder, renamed into place."""
    from torchvision.utils import save_image

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            save_image(images, tmp, nrow=per_row, pad_value=0.5)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise UserError(f"cannot write {path}: {e.strerror}{where}; choose another out=") from None


def slerp(a, b, t):
    """Spherical interpolation between rows of a and b at fractions t (broadcast); lerp where a ∥ b."""
    import torch

    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1).unsqueeze(-1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe)
    wb = torch.where(parallel, t, torch.sin(t * omega) / safe)
    return wa * a + wb * b


def _generate(model, z, labels):
    return model.generate(z) if labels is None else model.generate(z, labels)


def render(model, mode: str, n: int, steps: int, label: int | None, generator):
    """The images (in [0, 1]) and images per row that `genlab sample` writes; UserError if the mode does not fit."""
    import torch

    kind = type(model).__name__
    if label is not None and not model.conditional:
        raise UserError(f"label={label} needs a class-conditional model (model=cgan), but this checkpoint holds a {kind}")
    if label is not None and not 0 <= label < model.num_classes:
        raise UserError(f"label={label} is out of range: this {kind} has {model.num_classes} classes, "
                        f"choose label=0..{model.num_classes - 1}")
    if mode == "grid":
        if model.conditional and label is None:
            return model.class_grid(max(1, n // model.num_classes), generator)
        z = torch.randn(n, model.latent_dim, generator=generator)
        return _generate(model, z, None if label is None else torch.full((n,), label)), math.ceil(math.sqrt(n))
    if mode == "interpolate":
        rows = n // steps
        if rows == 0:
            raise UserError(f"n={n} is too small for mode=interpolate with steps={steps}: "
                            f"it makes n // steps rows, so pass n>={steps}")
        ends = torch.randn(2 * rows, 1, model.latent_dim, generator=generator)
        z = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, steps)[:, None]).flatten(0, 1)
        labels = None
        if model.conditional:
            labels = torch.full((rows,), label) if label is not None else torch.randint(model.num_classes, (rows,), generator=generator)
            labels = labels.repeat_interleave(steps)
        return _generate(model, z, labels), steps
    if not hasattr(model, "traversal"):
        raise UserError(f"mode=traverse needs a VAE (its latent dimensions are trained to be independent), "
                        f"but this checkpoint holds a {kind}: use mode=grid or mode=interpolate")
    return model.generate(model.traversal(steps, generator)), steps


def sample(ckpt: str, n: int, seed: int, out: str | None, *, mode: str, steps: int, label: int | None) -> Path:
    import torch

    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not allowed: choose one of {', '.join(MODES)}")
    integers = [("n", n, 1), ("seed", seed, 0), ("steps", steps, 2)] + ([("label", label, 0)] if label is not None else [])
    for key, value, low in integers:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key}={value!r} is not allowed: expected an integer >= {low}")
    ckpt_path = Path(ckpt)
    out_path = Path(out) if out else default_out(ckpt_path, mode, n, steps, label, seed)
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"out={out} is not allowed: the grid is a PNG, name it *.png")
    model = load_model(ckpt_path)
    images, per_row = render(model, mode, n, steps, label, torch.Generator().manual_seed(seed))
    write_png(images, out_path, per_row)
    return out_path


@hydra.main(config_path=config_dir(), config_name="sample", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from omegaconf.errors import MissingMandatoryValue

    try:
        path = sample(cfg.ckpt, cfg.n, cfg.seed, cfg.out, mode=cfg.mode, steps=cfg.steps, label=cfg.label)
    except MissingMandatoryValue:
        sys.exit("genlab sample: error: ckpt is required: genlab sample ckpt=outputs/<run>/checkpoints/last.pt")
    except UserError as e:
        sys.exit(f"genlab sample: error: {e}")
    print(path)


def run(args: list[str]) -> None:
    """`genlab sample ARGS`: check the overrides first, then hand ARGS to the Hydra app."""
    from hydra._internal.utils import get_args_parser

    from genlab.config import compose_jobs, only_inspects

    parsed = get_args_parser().parse_args(args)
    if not only_inspects(parsed):
        try:
            compose_jobs(parsed.config_name or "sample", parsed.overrides, False)
        except ConfigError as e:
            sys.exit(f"genlab sample: error: {e}")
    sys.argv = [sys.argv[0], *args]
    _app()
