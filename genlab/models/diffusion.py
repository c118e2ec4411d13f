"""Diffusion (EDM): a denoiser trained on noise levels σ, sampled by the probability-flow ODE.

One module past ~350 lines on purpose: a family is one module plus one YAML (issue 32, DESIGN.md), and
its U-Net lives here because no other family uses it.

Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (NeurIPS), as in their code (NVlabs/edm: training/loss.py EDMLoss, training/networks.py
EDMPrecond and SongUNet, generate.py edm_sampler, training/training_loop.py for the EMA and the
learning-rate ramp). Images x in [0, 1] are scaled to y = 2x − 1 in [−1, 1]; σ_data = 0.5.

Preconditioning (eq. 7; Table 1, "Ours"): the denoiser D wraps the network F as

    D_θ(x; σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x; c_noise(σ))
    c_skip = σ_data² / (σ² + σ_data²)      c_out = σ·σ_data / √(σ² + σ_data²)
    c_in   = 1 / √(σ² + σ_data²)           c_noise = ¼·ln σ

Training (eq. 2 and 8; Table 1): σ ~ ln σ ~ N(P_mean, P_std²), P_mean = −1.2, P_std = 1.2; n ~ N(0, σ²I);

    loss = λ(σ)·‖D_θ(y + n; σ) − y‖²,   λ(σ) = (σ² + σ_data²) / (σ·σ_data)²

summed over pixels and averaged over the batch (EDM's loss.sum() / batch). λ(σ)·c_out(σ)² = 1, so
the network's own target has unit weight at every σ (eq. 8).

Sampling (Algorithm 1 with S_churn = 0, i.e. deterministic 2nd-order Heun on the probability-flow
ODE dx/dσ = (x − D(x; σ))/σ, eq. 1 and 3 with σ(t) = t, s(t) = 1): the N = sample_steps noise levels

    t_i = (σ_max^(1/ρ) + i/(N − 1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,  i < N;  t_N = 0      (eq. 5)

with σ_min = 0.002, σ_max = 80, ρ = 7. From x_0 = σ_max·z (z ~ N(0, I), the latent), each step
takes an Euler step d_i = (x_i − D(x_i; t_i))/t_i, x_{i+1} = x_i + (t_{i+1} − t_i)·d_i, and, except
the last step (to t_N = 0), Heun's correction with d' = (x_{i+1} − D(x_{i+1}; t_{i+1}))/t_{i+1}:
x_{i+1} = x_i + (t_{i+1} − t_i)·(d_i + d')/2. That is 2N − 1 network evaluations (NFE): EDM's 18
steps = 35 NFE. The ODE is solved in float64 (as edm_sampler), the network runs in float32.

Latent and decode: the latent of an image is z, the initial noise image, shape C×H×W, drawn by
`prior`; `decode` is the deterministic ODE solve from it with the EMA network, so slerp
interpolation, `latent=[…]`, explore's sliders and eval need nothing diffusion-specific.

Network (EDM's SongUNet, the DDPM++ U-Net of their CIFAR-10 runs, scaled down and sized from the
image): levels at sides H, H/2, … while the side is even and its half is ≥ 7 (28 px: 28, 14, 7;
32 px: 32, 16, 8; 64 px: 64, 32, 16, 8); `width` channels at the first level, 2·width below;
`blocks` residual blocks per level in the encoder, blocks + 1 in the decoder; self-attention
(one head) where the side is ≤ `attention_side` (at most 64 positions at the default 8: cheap, and
where global structure is decided) and in the bottleneck. Each block: GroupNorm, SiLU, 3×3 conv, the
embedding added, GroupNorm, SiLU, dropout, 3×3 conv (zero-initialised), skip, ×√½. Down/up-sampling:
2×2 mean / nearest (EDM's [1, 1] resample filter). The noise embedding is EDM's positional embedding
of c_noise through a 2-layer MLP (4·width).

Classes (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance"): when the dataset has classes and
`class_conditional`, the one-hot label ×√K enters the embedding through a linear map (as SongUNet's
map_label), and is zeroed with probability `label_dropout` in training, so the zero vector is the
unconditional model ∅. With guidance weight w = `guidance` (their eq. 6, written for D: D = x − σ·ε is
affine in ε):  D̃(x; σ, c) = (1 + w)·D(x; σ, c) − w·D(x; σ, ∅). w = 0: plain conditional sampling;
w > 0 evaluates the network twice per step (one batch of 2N).

Weights used outside training: EDM's EMA. After each update, with B images per step and n images
seen before it, θ_ema ← β·θ_ema + (1 − β)·θ, β = 0.5^(B / h), h = min(ema_halflife_kimg·1000,
ema_rampup_ratio·n) images: the half-life grows with the run, so a run stopped early (a signal) still
has a sensible average. Learning rate: lr·min(n / (lr_rampup_kimg·1000), 1) (EDM's linear ramp).

Logged scalars, per image: `weighted_sq_error` (the loss above, summed over the pixels of y in
[−1, 1]), `ln_sigma_mean` (the batch's mean ln σ, ≈ P_mean: a check on the training distribution;
a mean, so that under DDP the ranks' values average to the whole batch's).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config.checks import ConfigError, require
from genlab.data.batches import Batch
from genlab.models import optim
from genlab.models.base import GenerativeModel
from genlab.models.ema import average_of
from genlab.models.optim import make_optimizer


# -- preconditioning, loss weight and noise levels (EDM, Table 1) -----------------------------------

def preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) of eq. 7 at noise levels σ."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)² (eq. 8, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def noise_levels(steps: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """t_0 > … > t_{N−1} of eq. 5, then t_N = 0; plain floats, so the sampler never syncs."""
    if steps == 1:
        return [sigma_max, 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (steps - 1) * (b - a)) ** rho for i in range(steps)] + [0.0]


def heun_sample(denoise, latents: torch.Tensor, steps: int, sigma_min: float, sigma_max: float,
                rho: float) -> torch.Tensor:
    """EDM's deterministic sampler (Algorithm 1, S_churn = 0): x_N from x_0 = σ_max·latents, in
    float64; denoise(x, σ) is D(x; σ) for a batch x and a float σ. 2·steps − 1 calls."""
    t = noise_levels(steps, sigma_min, sigma_max, rho)
    x = latents.to(torch.float64) * t[0]
    for i in range(steps):
        d = (x - denoise(x, t[i]).to(torch.float64)) / t[i]
        x_next = x + (t[i + 1] - t[i]) * d
        if i < steps - 1:  # no correction on the last step, to σ = 0
            d_next = (x_next - denoise(x_next, t[i + 1]).to(torch.float64)) / t[i + 1]
            x_next = x + (t[i + 1] - t[i]) * (0.5 * d + 0.5 * d_next)
        x = x_next
    return x


# -- the network (EDM's SongUNet, small) --------------------------------------------------------------

def _init(layer: nn.Module, scale: float = 1.0) -> nn.Module:
    """EDM's init: Xavier-uniform weights times `scale` (1e-5 for the last conv of a block), zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    with torch.no_grad():
        layer.weight.mul_(scale)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _norm(channels: int) -> nn.GroupNorm:
    """EDM's GroupNorm: up to 32 groups of ≥ 4 channels (here the most groups that divide the channels)."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class Block(nn.Module):
    """SongUNet's UNetBlock (adaptive_scale=False, one attention head, resample_proj=True)."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float, attention: bool = False, resample: str = ""):
        super().__init__()
        self.cin, self.resample, self.dropout = cin, resample, dropout
        self.norm0, self.conv0 = _norm(cin), _init(nn.Conv2d(cin, cout, 3, padding=1))
        self.affine = _init(nn.Linear(emb, cout))
        self.norm1, self.conv1 = _norm(cout), _init(nn.Conv2d(cout, cout, 3, padding=1), 1e-5)
        self.skip = _init(nn.Conv2d(cin, cout, 1)) if cin != cout or resample else None
        self.attention = attention
        if attention:
            self.norm2, self.qkv = _norm(cout), _init(nn.Conv2d(cout, 3 * cout, 1), math.sqrt(0.2))
            self.proj = _init(nn.Conv2d(cout, cout, 1), 1e-5)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = self._resample(x)
        x = self.conv0(self._resample(F.silu(self.norm0(x))))
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None].to(x.dtype)))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * math.sqrt(0.5)
        if self.attention:
            n, c, h, w = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(n, 3, c, h * w).transpose(2, 3).unbind(1)
            a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # softmax(qkᵀ/√c)·v
            x = (self.proj(a.transpose(1, 2).reshape(n, c, h, w)) + x) * math.sqrt(0.5)
        return x


def levels(side: int) -> list[int]:
    """The U-Net's sides: halve while the side is even and its half is ≥ 7."""
    sides = [side]
    while sides[-1] % 2 == 0 and sides[-1] // 2 >= 7:
        sides.append(sides[-1] // 2)
    return sides


class Denoiser(nn.Module):
    """D_θ(x; σ, class one-hot): EDMPrecond around a small SongUNet (module docstring)."""

    def __init__(self, image_shape, width: int, blocks: int, attention_side: int, dropout: float,
                 num_classes: int, sigma_data: float):
        super().__init__()
        channels = image_shape[0]
        self.sigma_data, self.width = sigma_data, width
        emb = 4 * width
        self.map_label = _init(nn.Linear(num_classes, width)) if num_classes else None
        self.map0, self.map1 = _init(nn.Linear(width, emb)), _init(nn.Linear(emb, emb))
        sides = levels(image_shape[1])
        mults = [1] + [2] * (len(sides) - 1)
        self.enc, skips, c = nn.ModuleList(), [], width
        self.stem = _init(nn.Conv2d(channels, width, 3, padding=1))
        skips.append(width)
        for level, (side, mult) in enumerate(zip(sides, mults)):
            if level:
                self.enc.append(Block(c, c, emb, dropout, resample="down"))
                skips.append(c)
            for _ in range(blocks):
                self.enc.append(Block(c, width * mult, emb, dropout, attention=side <= attention_side))
                c = width * mult
                skips.append(c)
        self.mid = nn.ModuleList([Block(c, c, emb, dropout, attention=True), Block(c, c, emb, dropout)])
        self.dec = nn.ModuleList()
        for level in reversed(range(len(sides))):
            side, mult = sides[level], mults[level]
            if level < len(sides) - 1:
                self.dec.append(Block(c, c, emb, dropout, resample="up"))
            for i in range(blocks + 1):
                self.dec.append(Block(c + skips.pop(), width * mult, emb, dropout,
                                      attention=i == blocks and side <= attention_side))
                c = width * mult
        self.out_norm, self.out_conv = _norm(c), _init(nn.Conv2d(c, channels, 3, padding=1), 1e-5)

    def embedding(self, c_noise: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        """EDM's PositionalEmbedding(endpoint=True) of c_noise, (sin, cos) order, + label, then the MLP."""
        half = self.width // 2
        freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32, device=c_noise.device) / (half - 1))
        angles = c_noise.float()[:, None] * freqs
        emb = torch.cat([angles.sin(), angles.cos()], 1)
        if self.map_label is not None and onehot is not None:
            emb = emb + self.map_label(onehot * math.sqrt(onehot.shape[1]))
        return F.silu(self.map1(F.silu(self.map0(emb))))

    def raw(self, x: torch.Tensor, c_noise: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        """F_θ: the U-Net itself."""
        emb = self.embedding(c_noise, onehot)
        x = self.stem(x)
        skips = [x]
        for block in self.enc:
            x = block(x, emb)
            skips.append(x)
        for block in self.mid:
            x = block(x, emb)
        for block in self.dec:
            if block.cin != x.shape[1]:
                x = torch.cat([x, skips.pop()], 1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        x, sigma = x.float(), sigma.float().reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.sigma_data)
        return c_skip * x + c_out * self.raw(c_in * x, c_noise.flatten(), onehot).float()


# -- the family --------------------------------------------------------------------------------------

class Diffusion(GenerativeModel):
    """EDM diffusion: one denoiser, its EMA, Adam; decode = the Heun ODE solve (module docstring)."""

    nets = ("net",)

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        self.image_shape, self.device = tuple(image_shape), device
        self.num_classes = num_classes if model["class_conditional"] and num_classes >= 2 else None
        self.sigma_data, self.p_mean, self.p_std = model["sigma_data"], model["p_mean"], model["p_std"]
        self.sigma_min, self.sigma_max, self.rho = model["sigma_min"], model["sigma_max"], model["rho"]
        self.sample_steps, self.guidance = model["sample_steps"], model["guidance"]
        self.label_dropout = model["label_dropout"] if self.num_classes else 0.0
        # A label is dropped when its N(0, 1) draw is below Φ⁻¹(p): probability p, from the batch's noise stream.
        self._drop_below = NormalDist().inv_cdf(self.label_dropout) if 0 < self.label_dropout < 1 else None
        self.net = Denoiser(image_shape, model["width"], model["blocks"], model["attention_side"], model["dropout"],
                            self.num_classes or 0, self.sigma_data).to(device)
        self.net_ema = average_of(self.net)
        self.ema_halflife_nimg = model["ema_halflife_kimg"] * 1000
        self.ema_rampup_ratio = model["ema_rampup_ratio"]
        self.lr, self.lr_rampup_nimg = optimizer["lr"], model["lr_rampup_kimg"] * 1000
        self.optimizer = make_optimizer(self.net.parameters(), optimizer)
        self.images_seen = 0  # n of the module docstring: images trained on before the next step

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "model.width", "int", low=8)
        if cfg.model.width % 8:
            raise ConfigError(f"model.width={cfg.model.width} is not allowed: expected a multiple of 8 "
                              "(GroupNorm groups of 4 channels at width and 2·width, and an even embedding)")
        require(cfg, "model.blocks", "int", low=1)
        require(cfg, "model.attention_side", "int", low=0)
        require(cfg, "model.dropout", "number", low=0, high=1)
        for key in ("sigma_data", "sigma_min", "p_std", "rho", "lr"):
            require(cfg, f"model.{key}", "number", low=0, low_open=True)
        require(cfg, "model.p_mean", "number")
        require(cfg, "model.sigma_max", "number", low=cfg.model.sigma_min, low_open=True)
        require(cfg, "model.sample_steps", "int", low=1)
        require(cfg, "model.guidance", "number", low=0)
        require(cfg, "model.class_conditional", "bool", choices=(True, False))
        require(cfg, "model.label_dropout", "number", low=0, high=1)
        require(cfg, "model.ema_halflife_kimg", "number", low=0)
        require(cfg, "model.ema_rampup_ratio", "number", low=0)
        require(cfg, "model.lr_rampup_kimg", "number", low=0)
        if cfg.model.guidance > 0 and cfg.model.label_dropout == 0 and cfg.model.class_conditional:
            raise ConfigError(f"model.guidance={cfg.model.guidance} is not allowed with model.label_dropout=0: "
                              "guidance needs the unconditional model that label dropout trains (e.g. model.label_dropout=0.1)")

    # -- sampling ----------------------------------------------------------------------------------

    @property
    def nfe(self) -> int:
        """Network evaluations per decoded image: 2·sample_steps − 1, twice that under guidance."""
        return (2 * self.sample_steps - 1) * (2 if self.num_classes and self.guidance else 1)

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *self.image_shape, generator=generator)

    def _onehot(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if labels is None:  # no class asked for: the unconditional model ∅
            return torch.zeros(n, self.num_classes, device=self.device)
        return F.one_hot(labels.to(self.device), self.num_classes).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1]: the ODE solve from σ_max·z with the EMA denoiser (and guidance)."""
        net, n = self.net_ema, latents.shape[0]
        onehot = self._onehot(labels, n)
        guided = onehot is not None and labels is not None and self.guidance > 0
        if guided:
            onehot = torch.cat([onehot, torch.zeros_like(onehot)])

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            x = x.float()
            if not guided:
                return net(x, torch.full((n,), sigma, device=x.device), onehot)
            both = net(torch.cat([x, x]), torch.full((2 * n,), sigma, device=x.device), onehot)
            cond, uncond = both.chunk(2)
            return (1 + self.guidance) * cond - self.guidance * uncond

        y = heun_sample(denoise, latents.to(self.device), self.sample_steps, self.sigma_min, self.sigma_max, self.rho)
        return ((y.float() + 1) / 2).clamp(0, 1)

    # -- training ----------------------------------------------------------------------------------

    def loss(self, y: torch.Tensor, onehot: torch.Tensor | None, rnd_normal: torch.Tensor,
             noise: torch.Tensor, net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """EDMLoss per image (summed over pixels) and σ, for data y in [−1, 1] and N(0, 1) draws
        rnd_normal (N, 1, 1, 1) and noise (like y)."""
        sigma = (rnd_normal * self.p_std + self.p_mean).exp()
        denoised = (net or self.net)(y + noise * sigma, sigma, onehot)
        return (loss_weight(sigma, self.sigma_data) * (denoised - y) ** 2).flatten(1).sum(1), sigma

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        y = batch.images * 2 - 1
        n = y.shape[0]
        onehot = self._onehot(batch.labels, n)
        if onehot is not None and self._drop_below is not None:
            onehot = onehot * (batch.noise((n, 1)) >= self._drop_below)
        elif onehot is not None and self.label_dropout >= 1:
            onehot = torch.zeros_like(onehot)
        rnd_normal = batch.noise((n, 1, 1, 1))
        per_image, sigma = self.loss(y, onehot, rnd_normal, batch.noise(y.shape))
        loss = per_image.mean()

        global_batch = n * batch.shard.size
        ramp = min(self.images_seen / self.lr_rampup_nimg, 1) if self.lr_rampup_nimg else 1
        for group in self.optimizer.param_groups:  # EDM's linear learning-rate ramp (a float: no sync)
            group["lr"] = self.lr * ramp
        self.optimizer.zero_grad(set_to_none=True)
        optim.backward(loss, self.optimizer)
        optim.step(self.optimizer)
        self._update_ema(global_batch)
        self.images_seen += global_batch
        return {"weighted_sq_error": loss.detach(), "ln_sigma_mean": sigma.detach().log().mean()}

    @torch.no_grad()
    def _update_ema(self, batch_size: int) -> None:
        halflife = min(self.ema_halflife_nimg, self.ema_rampup_ratio * self.images_seen) \
            if self.ema_rampup_ratio else self.ema_halflife_nimg
        beta = 0.5 ** (batch_size / max(halflife, 1e-8))
        # One fused op over all tensors (EDM loops over them; ~200 small kernels a step on a GPU).
        torch._foreach_lerp_(list(self.net_ema.parameters()), list(self.net.parameters()), 1 - beta)

    # -- state -------------------------------------------------------------------------------------

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": self.optimizer}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "net_ema": self.net_ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "images_seen": self.images_seen}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.net_ema.load_state_dict(state["net_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.images_seen = int(state["images_seen"])
