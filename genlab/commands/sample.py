"""genlab sample: rebuild a model from its checkpoint alone and write a PNG grid of samples.

Modes (latents come from the model's prior, drawn on the CPU from a generator seeded with `seed`):

    grid         n samples; a conditional model's default is its class grid (row k = class k, the
                 same latent down each column), `label=K` gives n samples of class K instead
    interpolate  n // steps rows; row i walks from z_a to z_b (both ~ N(0, I)) along the great circle
                     slerp(z_a, z_b; t) = sin((1 − t)Ω)/sin Ω · z_a + sin(tΩ)/sin Ω · z_b,
                     cos Ω = z_a·z_b / (|z_a||z_b|),  t = 0 … 1 in `steps` steps
                 (Shoemake 1985; White 2016, "Sampling Generative Networks": high-dimensional
                 Gaussian samples lie near a sphere, which a straight line cuts through). Row i
                 runs from sample i to sample rows + i of `mode=grid n=2·rows` with the same seed
                 (and label); for a conditional model each row keeps one class (`label=K`, or one
                 drawn per row). Latents of any shape are interpolated as flat vectors.
    traverse     models with independent latent dimensions (the VAE): one row per dimension, that
                 dimension swept over [−3, 3] in `steps` steps while the others stay at one draw
                 from the prior (the latent-traversal figure of β-VAE, Higgins et al. 2017)

`latent=[…]` (mode=grid) decodes that one latent, its numbers in the order of the prior's flattened
latent, instead of drawing from the prior (n and seed are not used); a conditional model shows it
in class `label=K`, or in every class (a column of the class grid). `genlab explore` prints this
command for the image it shows, with the latent's float32 values written so that they read back
exactly.

Output. Up to GRID_MAX images go to a PNG grid by default; more (`genlab sample n=10000`, e.g. for a
Fréchet distance) go to a NumPy archive `.npz` holding `images`, uint8 N×H×W×C in generation
order: a grid of thousands of images is too large to look at, and metrics want the pixels.
`out=` picks either by its suffix. `context=K` (a model of clips) continues the first K frames of n
test clips instead and prints the per-frame error beside copying the last seen frame
(genlab/commands/prediction.py). A model whose samples are clips (`clips`, genlab/models/base.py)
writes, for a .png, an animated GIF beside it (same name, .gif: frame t shows frame t of every clip,
laid out as the grid would be) and makes the PNG a film strip (one clip per row, its frames left to
right); its .npz holds `images` as uint8 N×T×H×W×C. Images are generated `batch_size` at a time from latents drawn
up front (the same latents whatever the batch size), so memory stays bounded; the .npz is written
batch by batch. stderr gets the generation rate in images per second (the networks' time only).
Sizes whose latents and images cannot fit in memory, or whose .npz cannot fit on its disk, are
refused before any image is made, naming the largest n (or steps, batch_size) that fits.

`sample_steps=K` decodes a model whose decode is an iterative solve (diffusion) with K solver steps
instead of its checkpoint's own (genlab/models/base.py, set_sample_steps: a one-pass family refuses
it); the default file name then says so (…_sample_steps4_seed0.png).

The same checkpoint, options and seed give the same file, byte for byte.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.config.checks import ConfigError, is_number
from genlab.commands.wrapper import check_jobs, reports_errors, run_command
from genlab.config.compose import config_dir
from genlab.config.validate import validate_hardware
from genlab.errors import UserError

MODES = ("grid", "interpolate", "traverse")
FORMATS = (".png", ".npz")
GRID_MAX = 1024  # images in a PNG grid (32×32); more go to an .npz


def default_out(ckpt: Path, mode: str, n: int, steps: int, label: int | None, seed: int, latent=None,
                sample_steps: int | None = None) -> Path:
    """<run dir>/samples/sample_n64_seed0.png, interpolate_label2_n64_steps8_seed0.png, sample_n10000_seed0.npz,
    latent_label2_<8 hex digits of the latent's hash>.png, sample_n64_sample_steps4_seed0.png, …"""
    import hashlib

    from genlab.training.checkpoint import run_dir_of

    run_dir = run_dir_of(ckpt)
    solver = f"sample_steps{sample_steps}" if sample_steps is not None else ""
    if latent is not None:
        digest = hashlib.sha256(repr(list(latent)).encode()).hexdigest()[:8]
        return run_dir / "samples" / ("_".join(filter(None, ["latent", f"label{label}" if label is not None else "", solver,
                                                            digest])) + ".png")
    parts = ["sample" if mode == "grid" else mode, f"label{label}" if label is not None else "",
             f"n{n}" if mode != "traverse" else "", f"steps{steps}" if mode != "grid" else "", solver, f"seed{seed}"]
    suffix = ".npz" if mode != "traverse" and n > GRID_MAX else ".png"
    return run_dir / "samples" / ("_".join(filter(None, parts)) + suffix)


def load_model(ckpt: Path, device: str = "cpu", compile_nets: bool = False):
    """The model stored in a checkpoint, on `device`, in eval mode; its nets compiled with compile_nets
    (hardware.compile)."""
    import torch

    from genlab.models import model_from_checkpoint
    from genlab.training import runtime
    from genlab.training.checkpoint import load_checkpoint

    model = model_from_checkpoint(load_checkpoint(ckpt), torch.device(device))
    if compile_nets:
        runtime.compile_nets(model)
    return model


def write(path: Path, write_file) -> None:
    """Create the folder and call write_file(path); an OSError becomes a one-line UserError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise UserError(f"cannot write {path}: {e.strerror}{where}; choose another out=") from None


def slerp(a, b, t):
    """Spherical interpolation between rows of a and b (n, 1, d) at fractions t (steps, 1), giving
    (n, steps, d); lerp where a ∥ b."""
    import torch

    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1).unsqueeze(-1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe)
    wb = torch.where(parallel, t, torch.sin(t * omega) / safe)
    return wa * a + wb * b


def generate(model, z, labels, batch_size: int | None):
    """Images in [0, 1] on the CPU for latents z (and labels), batch_size at a time (None: all at once)."""
    step = batch_size or len(z)
    for start in range(0, len(z), step):
        chunk = z[start : start + step]
        yield model.decode(chunk, None if labels is None else labels[start : start + step]).cpu()


def latents(model, mode: str, n: int, steps: int, label: int | None, generator, latent=None):
    """The latents, labels (None for unconditional models) and images per row of what `genlab
    sample` writes; UserError if the mode does not fit the model. latent: a list of numbers, the
    one latent to decode (mode=grid), instead of draws from the prior."""
    import torch

    classes = model.num_classes
    if label is not None and not classes:
        raise UserError(f"label={label} needs a class-conditional model, but this checkpoint holds a {model.kind}, "
                        "which has no classes")
    if label is not None and not 0 <= label < classes:
        raise UserError(f"label={label} is out of range: this {model.kind} has {classes} classes, "
                        f"choose label=0..{classes - 1}")
    if latent is not None:
        shape = model.prior(1, torch.Generator().manual_seed(0)).shape[1:]
        if mode != "grid" or len(latent) != math.prod(shape):
            raise UserError(f"latent= has {len(latent)} numbers with mode={mode}: this {model.kind} decodes one latent of "
                            f"{math.prod(shape)} numbers with mode=grid")
        z = torch.tensor(latent, dtype=torch.float32).view(1, *shape)
        if classes and label is None:
            return z.repeat(classes, *[1] * len(shape)), torch.arange(classes), 1
        return z, None if label is None else torch.full((1,), label), 1
    if mode == "grid":
        if classes and label is None:
            columns = max(1, n // classes)
            return *model.class_grid_latents(columns, generator), columns
        z = model.prior(n, generator)
        return z, None if label is None else torch.full((n,), label), math.ceil(math.sqrt(n))
    if mode == "interpolate":
        rows = n // steps
        if rows == 0:
            raise UserError(f"n={n} is too small for mode=interpolate with steps={steps}: "
                            f"it makes n // steps rows, so pass n>={steps}")
        ends = model.prior(2 * rows, generator)
        flat = ends.flatten(1)[:, None]
        z = slerp(flat[:rows], flat[rows:], torch.linspace(0, 1, steps)[:, None]).flatten(0, 1).view(-1, *ends.shape[1:])
        labels = None
        if classes:
            labels = torch.full((rows,), label) if label is not None else model.random_labels(rows, generator)
            labels = labels.repeat_interleave(steps)
        return z, labels, steps
    return model.traversal(steps, generator), None, steps


def render(model, mode: str, n: int, steps: int, label: int | None, generator, batch_size: int | None = None,
           latent=None):
    """The images (in [0, 1]) and images per row that `genlab sample` writes; UserError if the mode does not fit."""
    import torch

    z, labels, per_row = latents(model, mode, n, steps, label, generator, latent)
    return torch.cat(list(generate(model, z, labels, batch_size))), per_row


def check_sizes(model, mode: str, n: int, steps: int, batch_size: int | None, out_path: Path) -> None:
    """ConfigError, in one line with the largest value that fits, when the latents (all drawn up
    front) and images `genlab sample` holds cannot fit in this machine's memory, float32 each (a PNG
    grid holds every image, an .npz one batch), or an .npz in the free space of its disk."""
    import shutil

    import torch

    from genlab.config.checks import memory_budget, require_fits

    latent = math.prod(model.prior(1, torch.Generator().manual_seed(0)).shape[1:])
    pixels = math.prod(model.image_shape)
    png = out_path.suffix.lower() == ".png"
    counted = {"steps": steps} if mode == "traverse" else {"n": n}

    def count(s: dict[str, int]) -> int:  # traverse: a row of `steps` images per latent dimension
        return s["steps"] * latent if mode == "traverse" else s["n"]

    def memory(s: dict[str, int]) -> int:
        images = count(s)
        return 4 * (images * latent + (images if png else min(s.get("batch_size", images), images)) * pixels)

    require_fits(f"mode={mode} ({latent} latent and {pixels} pixel values per image)",
                 {**counted, **({"batch_size": batch_size} if batch_size is not None else {})}, memory, memory_budget())
    if not png:
        folder = next(p for p in out_path.parents if p.exists())
        free = shutil.disk_usage(folder).free
        require_fits(f"out={out_path}", counted, lambda s: count(s) * pixels,
                     (free, f"the {free / 2**30:,.1f} GiB free on {folder}"))


class Rate:
    """Wraps an iterator of image batches and counts the images and the seconds spent producing them."""

    def __init__(self, batches):
        self.batches, self.images, self.seconds = batches, 0, 0.0

    def __iter__(self):
        while True:
            start = time.perf_counter()
            batch = next(self.batches, None)
            self.seconds += time.perf_counter() - start
            if batch is None:
                return
            self.images += len(batch)
            yield batch

    def line(self, batch_size: int | None) -> str:
        rate = self.images / self.seconds if self.seconds else float("inf")
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"  # a diffusion model on the CPU: under 1 img/s
        return (f"generated {self.images:,} images in {self.seconds:.2f} s: {shown} img/s "
                f"(batches of {batch_size or self.images:,})")


def sample(ckpt: str, n: int, seed: int, out: str | None, *, mode: str, steps: int, label: int | None,
           batch_size: int | None = None, latent=None, context: int | None = None, sample_steps: int | None = None,
           device: str = "cpu", compile_nets: bool = False) -> Path:
    """Write what `genlab sample` writes (see the module docstring); returns its path. batch_size:
    images per forward pass (None: all at once); latent: one latent to decode, a list of numbers;
    context: continue n test clips after this many frames instead (genlab/commands/prediction.py);
    sample_steps: solver steps of an iteratively decoding model (None: the checkpoint's own);
    device: where the model runs (the latents are drawn on the CPU, so every device draws the same);
    compile_nets: torch.compile the model's nets first (hardware.compile)."""
    import torch

    from genlab import images
    from genlab.models.base import set_sample_steps
    from genlab.training.checkpoint import resolve

    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not allowed: choose one of {', '.join(MODES)}")
    integers = [("n", n, 1), ("seed", seed, 0), ("steps", steps, 2)] + ([("label", label, 0)] if label is not None else []) \
        + ([("batch_size", batch_size, 1)] if batch_size is not None else []) \
        + ([("sample_steps", sample_steps, 1)] if sample_steps is not None else [])
    for key, value, low in integers:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key}={value!r} is not allowed: expected an integer >= {low}")
    if latent is not None and (isinstance(latent, (str, bytes)) or not hasattr(latent, "__len__")
                               or not latent or not all(map(is_number, latent))):
        raise ConfigError(f"latent={latent!r} is not allowed: expected a list of finite numbers, e.g. latent=[0.5,-1.2,0.03]")
    ckpt_path = resolve(ckpt)  # a run directory means its checkpoints/last.pt
    if context is not None:
        from genlab.commands.prediction import sample_prediction

        if mode != "grid" or label is not None or latent is not None:
            raise ConfigError("context= continues test clips, which mode=, label= and latent= do not apply to: drop them")
        model = set_sample_steps(load_model(ckpt_path, device, compile_nets), sample_steps)
        return sample_prediction(ckpt_path, model, n, seed, out, context, batch_size)
    out_path = Path(out) if out else default_out(ckpt_path, mode, n, steps, label, seed, latent, sample_steps)
    suffix = out_path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"out={out} is not allowed: name it *.png (a grid) or *.npz (every image as uint8)")
    if suffix == ".png" and mode != "traverse" and n > GRID_MAX:
        raise ConfigError(f"out={out} with n={n} is not allowed: a PNG grid holds at most {GRID_MAX} images; "
                          f"write all {n} with out=<name>.npz, or pass n<={GRID_MAX}")
    model = set_sample_steps(load_model(ckpt_path, device, compile_nets), sample_steps)
    if latent is None:
        check_sizes(model, mode, n, steps, batch_size, out_path)
    z, labels, per_row = latents(model, mode, n, steps, label, torch.Generator().manual_seed(seed), latent)
    rate = Rate(generate(model, z, labels, batch_size))
    if suffix == ".png" and model.clips:  # clips (genlab/models/base.py): a GIF beside a film strip
        clips = torch.cat(list(rate))
        gif_path = out_path.with_suffix(".gif")
        write(gif_path, lambda path: images.write_gif(images.clip_grids(clips, per_row), path))
        print(gif_path)
        picture = images.film_strip(clips)
        write(out_path, lambda path: images.write_png(picture, path))
    elif suffix == ".png":
        picture = images.grid(torch.cat(list(rate)), per_row)
        write(out_path, lambda path: images.write_png(picture, path))
    else:
        uint8 = (images.to_uint8(batch.cpu()) for batch in rate)
        write(out_path, lambda path: images.write_npz(uint8, len(z), model.image_shape, path))
    print(f"genlab sample: {rate.line(batch_size)}", file=sys.stderr)
    return out_path


@hydra.main(config_path=config_dir(), config_name="sample", version_base="1.3")
@reports_errors("sample", required="genlab sample ckpt=outputs/<run>/checkpoints/last.pt")
def _app(cfg: DictConfig) -> None:
    from genlab.training.runtime import setup_device

    device = setup_device(OmegaConf.to_container(cfg.hardware, resolve=True))
    path = sample(cfg.ckpt, cfg.n, cfg.seed, cfg.out, mode=cfg.mode, steps=cfg.steps, label=cfg.label,
                  batch_size=cfg.batch_size, context=cfg.context, sample_steps=cfg.sample_steps, device=str(device),
                  compile_nets=cfg.hardware.compile,
                  latent=OmegaConf.to_container(cfg.latent) if OmegaConf.is_list(cfg.latent) else cfg.latent)
    print(path)


def run(args: list[str]) -> None:
    """`genlab sample ARGS`: check the overrides first, then hand ARGS to the Hydra app."""
    run_command("sample", _app, args, check_jobs("sample", validate_hardware))
