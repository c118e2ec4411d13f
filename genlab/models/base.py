"""The one contract between a model family and the rest of genlab.

The training loop, `genlab sample`, `genlab eval`, checkpoints and DDP use a model only through
`GenerativeModel`; none of them names a family. A family is one module that subclasses it plus one
YAML in configs/model/ whose `model._target_` names the class (found with Hydra's class lookup, so
adding a family edits no registry). The YAML is `# @package _global_`: besides `model:` it may
declare top-level shorthands that only this family reads (configs/model/vae.yaml: `beta`,
`noise_dim`), so a shorthand another family does not read is an unknown key there.

What a family provides:

    num_classes       None (unconditional) or the number of classes its decode takes
    clips             class attribute: whether its samples have a time axis. False (default):
                      image_shape is (C, H, W) and decode returns images (N, C, H, W). True:
                      image_shape is (T, C, H, W), decode returns clips (N, T, C, H, W) in [0, 1],
                      it trains on datasets of clips only (genlab/data/base.py; config validation
                      refuses other pairings), and `genlab sample` writes an animated GIF (one
                      frame per time step, every clip in a grid) and a PNG film strip (one clip a
                      row). Grown once for video (issue 30), so that nothing outside a family asks
                      which family it holds to know whether its samples move.
    conditional       class attribute: whether decode takes labels (num_classes then comes from
                      the dataset); the metrics that need classes read it before a model exists
    required_keys     keys its `model` section must hold, checked (one line each) before its
                      `validate` and before any work: genlab's own, `name` (runs, eval.json and
                      messages call the model by it), `lr` and `betas` (configs/optimizer/ reads
                      them), and any a family adds (required_keys = GenerativeModel.required_keys + …)
    nets              names of its trainable nn.Modules (compiled and wrapped for DDP by name)
    prior(n, g)       n latents, of whatever shape the family needs, drawn on the CPU from g
    decode(z, y)      images in [0, 1] on the model's device, deterministic given latents z (and
                      labels y when num_classes is set); no gradient
    encode(x)         images → latent codes (the posterior mean); only families with an encoder
    posterior(x)      (μ, log σ²) of a diagonal Gaussian q(z|x) over flat latents, and
    log_likelihood(z, x)  log p(x|z) per image in nats (N,), for images x in [0, 1]: the likelihood
                      interface the `nll` metric's importance sampling asks (genlab/metrics/
                      likelihood.py, prior N(0, I)); only families with one. With it: `likelihood`,
                      the name of p(x|z) recorded in eval.json, and `binary_likelihood`, whether
                      p(x|z) is a distribution over binary images only (then grey test images
                      get a note)
    log_prior(z)      log p(z) per latent in nats (N,), for latents of the likelihood interface;
                      default N(0, I). Grown for clips (issue 30): the video family's motion
                      latents have a learned recurrent prior p(z_t | z_<t), which the fixed N(0, I)
                      the nll metric assumed cannot express, and neither posterior nor
                      log_likelihood can carry it without computing something other than their
                      names say. The likelihood interface's latents are the z of p(z) and q(z|x);
                      they are prior()'s latents where p(z) = N(0, I) (the VAE), and not
                      necessarily elsewhere (the video family's decode reaches z from N(0, I) noise
                      through its learned prior)
    continue_clips(x, g)  clips only: given the first K frames x (N, K, C, H, W) in [0, 1] of clips,
                      the model's continuation (N, T − K, C, H, W) in [0, 1], its random draws from
                      g; where the family has a likelihood, the frames are the means of its
                      p(x_t | …), so a caller may score held-out frames under them. Grown for
                      conditional prediction (issue 30, `genlab sample context=K`): decode draws
                      whole clips from the prior and cannot be told what was seen; posterior
                      encodes a whole clip; continuing needs the family's own state after the
                      seen frames
    traversal(s, g)   latents of a latent-traversal figure; only families with independent latents
    directions(k, g, x)  up to k unit directions in latent space worth a slider in `genlab explore`,
                      most telling first, with a name each (x: data images or None); default: the
                      raw latent coordinates in order; `directions_title` heads them on the page
    train_step(b)     one update on a Batch (its own zero_grad/backward/step), per-image scalars;
                      backward and step through genlab/models/optim.py's `backward(loss, optimizer)`
                      and `step(optimizer)` (fp16 loss scaling lives there: a family that calls
                      loss.backward() and optimizer.step() itself trains wrongly under
                      hardware.precision=fp16; `unscale(optimizer)` before reading gradients),
                      optimizers built with `make_optimizer`
    image_grids       the grids the loop logs
    final_metrics     scalars measured on fixed data images at the end of a run (may be empty)
    optimizers()      name → optimizer (learning rates are logged, loss scales saved per name)
    state_dict        plain data: nets, optimizers, EMA copies; load_state_dict restores it
    validate(cfg)     classmethod: one-line ConfigError for a bad value of the family's own keys
                      or of a rule linking them to other sections (e.g. fp16 with R1)
    migrate(config)   classmethod: fill in, in place, the keys a checkpoint's config predates

Optional, for families whose decode is an iterative solve (diffusion, genlab/models/diffusion.py); a
caller reads them with getattr and a default, since the one-pass families need neither:

    nfe               network evaluations per image of one decode at the current settings (default 1):
                      for such a family quality is bought with steps, so `genlab eval` reports it beside
                      every FID. No existing member says what a decode costs.
    sample_steps      solver steps of decode, an int that a caller may assign on a loaded model to
                      sweep quality against cost (FID against steps) without retraining; no existing
                      member changes how decode runs. `set_sample_steps` below is that assignment for
                      the commands' `sample_steps=K` (eval, sample), refusing a one-pass family.

The base class's `encode`, `posterior`, `log_likelihood`, `continue_clips` and `traversal` refuse with a one-line
UserError, so a caller never asks which family it holds. What `genlab eval` may run follows from
them (`capabilities`: "encoder", "likelihood", "classes"; each metric's needs are in
genlab/metrics/registry.py). A family conditional by its config (diffusion's model.class_conditional)
leaves `conditional` False and sets num_classes: a built model's capabilities read num_classes.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from genlab.data.batches import Batch
from genlab.errors import UserError

class GenerativeModel:
    """Base class of every model family; see the module docstring for the contract."""

    num_classes: int | None = None
    conditional: bool = False
    clips: bool = False
    likelihood: str | None = None
    binary_likelihood: bool = False
    directions_title: str = "latent dimensions"
    nets: tuple[str, ...] = ()
    required_keys: tuple[str, ...] = ("name", "lr", "betas")
    image_shape: tuple[int, int, int]
    device: torch.device

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        raise NotImplementedError

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """Raise ConfigError for the first bad value of this family's keys (cfg: the whole run)."""

    @classmethod
    def migrate(cls, config: dict) -> None:
        """Add to a checkpoint's resolved run config the keys it predates, at the values it ran with."""

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise self._lacks("an encoder")

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise self._lacks("a likelihood interface")

    def log_likelihood(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise self._lacks("a likelihood interface")

    def log_prior(self, latents: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) per latent (…,), over the last dimension, in the latents' dtype."""
        return -0.5 * latents.square().sum(-1) - 0.5 * latents.shape[-1] * math.log(2 * math.pi)

    def continue_clips(self, context: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise self._lacks("a way to continue clips")

    def _lacks(self, what: str) -> UserError:
        return UserError(f"this needs a model with {what}, but the checkpoint holds a {self.kind}, which has none")

    def traversal(self, steps: int, generator: torch.Generator) -> torch.Tensor:
        raise UserError(f"mode=traverse needs a model whose latent dimensions are trained to be independent, "
                        f"but this checkpoint holds a {self.kind}: use mode=grid or mode=interpolate")

    def directions(self, count: int, generator: torch.Generator,
                   images: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """Up to `count` unit directions in latent space, (k, *latent shape), most telling first, and
        a name for each. Default: the first `count` raw latent coordinates z[0], z[1], …"""
        shape = self.prior(1, generator).shape[1:]
        k = min(count, math.prod(shape))
        return torch.eye(math.prod(shape))[:k].view(k, *shape), [f"z[{i}]" for i in range(k)]

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def image_grids(self, real: torch.Tensor, generator: torch.Generator) -> dict[str, tuple[torch.Tensor, int]]:
        """Grids to log: name → (images in [0, 1], images per row). Default: samples, and for a
        conditional model the class grid (row k = class k, the same latent down each column)."""
        n = real.shape[0]
        grids = {"samples": (self.sample(n, generator), math.ceil(math.sqrt(n)))}
        if self.num_classes:
            columns = max(1, n // self.num_classes)
            latents, labels = self.class_grid_latents(columns, generator)
            grids["classes"] = (self.decode(latents, labels), columns)
        return grids

    def final_metrics(self, images: torch.Tensor) -> dict[str, float]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    # -- shared behaviour, written once in terms of the contract ---------------------------------

    @property
    def kind(self) -> str:
        return type(self).__name__

    def train(self, mode: bool) -> None:
        for name in self.nets:
            getattr(self, name).train(mode)

    def random_labels(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """n classes drawn uniformly (None for an unconditional model)."""
        return torch.randint(self.num_classes, (n,), generator=generator) if self.num_classes else None

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images from the prior (of uniformly drawn classes for a conditional model)."""
        latents = self.prior(n, generator)
        return self.decode(latents, self.random_labels(n, generator))

    def class_grid_latents(self, columns: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and labels of the class grid, row by row: row k is class k, column j uses latent j."""
        latents = self.prior(columns, generator)
        rows = latents.repeat(self.num_classes, *[1] * (latents.dim() - 1))
        return rows, torch.arange(self.num_classes).repeat_interleave(columns)


def capabilities(model: GenerativeModel | type[GenerativeModel]) -> frozenset[str]:
    """What metrics may need of a model (built) or a family (its class, before a model exists):
    "encoder" (it has encode), "likelihood" (posterior and log_likelihood), "classes" (a built model
    with num_classes; a family declared conditional)."""
    family = model if isinstance(model, type) else type(model)

    def has(method: str) -> bool:
        return getattr(family, method) is not getattr(GenerativeModel, method)

    found = {"encoder"} if has("encode") else set()
    if has("posterior") and has("log_likelihood"):
        found.add("likelihood")
    if (family.conditional if model is family else model.num_classes):
        found.add("classes")
    return frozenset(found)


def set_sample_steps(model: GenerativeModel, steps: int | None) -> GenerativeModel:
    """The model with `sample_steps` set to `steps` (None: the checkpoint's own, unchanged). A family
    without the member decodes in one pass, so a command's `sample_steps=K` cannot apply to it: a
    one-line UserError naming the key rather than a silently ignored setting."""
    if steps is None:
        return model
    if getattr(model, "sample_steps", None) is None:
        raise UserError(f"sample_steps={steps} does not apply to this checkpoint: a {model.kind} decodes in one pass, "
                        "with no solver steps to choose; drop sample_steps=")
    model.sample_steps = steps
    return model
