"""genlab sample: rebuild a model from its checkpoint alone and write a PNG grid of samples.

The same checkpoint, n and seed give the same file, byte for byte (sampling runs on the CPU with
its own seeded generator).
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


def default_out(ckpt: Path, n: int, seed: int) -> Path:
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "samples" / f"sample_n{n}_seed{seed}.png"


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


def sample(ckpt: str, n: int, seed: int, out: str | None) -> Path:
    import torch

    for key, value, low in (("n", n, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key}={value!r} is not allowed: expected an integer >= {low}")
    ckpt_path = Path(ckpt)
    out_path = Path(out) if out else default_out(ckpt_path, n, seed)
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"out={out} is not allowed: the grid is a PNG, name it *.png")
    model = load_model(ckpt_path)
    images = model.sample(n, torch.Generator().manual_seed(seed))
    write_png(images, out_path, math.ceil(math.sqrt(n)))
    return out_path


@hydra.main(config_path=config_dir(), config_name="sample", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from omegaconf.errors import MissingMandatoryValue

    try:
        path = sample(cfg.ckpt, cfg.n, cfg.seed, cfg.out)
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
