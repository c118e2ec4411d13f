"""A sequence VAE for clips: a static latent for what stays, per-frame latents for what moves.

Disentangled Sequential Autoencoder (DSVAE; Li & Mandt 2018, "Disentangled Sequential
Autoencoder"), with the recurrent learned prior of SVG-LP (Denton & Fergus 2018, "Stochastic Video
Generation with a Learned Prior") placed on the motion latents only. A clip x = x_1…x_T; per clip,
in nats:

    h_t = E(x_t)                                             (a conv encoder per frame)
    q(s | x_1:T)    = N(μ_s, σ_s²),  (μ_s, log σ_s²) = S(mean_t h_t)       static: sees no order
    q(z_t | x_≤t)   = N(μ_t, σ_t²),  from a GRU over h_1…h_t                motion: causal
    p(s)            = N(0, I)
    p(z_t | z_<t)   = N(m_t, ρ_t²),  from a GRU over z_0 = 0, z_1, …, z_{t−1}   (the learned prior)
    p(x_t | s, z_t) = Bernoulli(sigmoid(D(s, z_t)))          (a conv decoder per frame)

    recon   = −Σ_t log p(x_t | s, z_t)                        (BCE summed over the clip's pixels)
    kl_s    = KL(q(s|x) ‖ N(0, I)) = ½ Σ (μ_s² + σ_s² − 1 − log σ_s²)
    kl_z    = Σ_t KL(q(z_t|x_≤t) ‖ p(z_t|z_<t)) = ½ Σ_t Σ_d (log ρ² − log σ² + (σ² + (μ − m)²)/ρ² − 1)
              (closed form for two diagonal Gaussians, z_<t sampled from q)
    neg_elbo = recon + kl_s + kl_z;   loss = recon + β·(kl_s + kl_z)

Scalars are per clip (summed over its T frames); `neg_elbo_nats_per_frame` divides by T.

Decoders (`model.decoder`). `conv`: D(s, z_t) is one conv decoder of [s | z_t], free to draw the digits'
shapes from z_t as well as from s. `sprites`: an object-centric decoder that cannot: s is split into
`model.slots` codes s¹…s^K, one sprite per code (logits a^k on a square of half the frame's side, one
shared conv decoder), and z_t only moves them: (c^k_t) = tanh(W(z_t)), each sprite's centre in the
frame's [−1, 1] coordinates, and

    D(s, z_t)[p] = b + max_k (a^k − b)(p − c^k_t)     (bilinear sampling; a sprite is b outside its square)

with b a learned background logit. max over logits is the logit of the max over intensities
(sigmoid is increasing): Moving MNIST merges overlapping digits by max (Srivastava et al. 2015). The
digits' shapes can come only from s, so a sampled clip keeps them in every frame; z_t can only say
where they are (as in DDPAE's pose/content split, Hsieh et al. 2018).

Latents (`prior`): one flat vector per clip, [s (static_dim) | ε_1 … ε_T (dynamic_dim each)], all
N(0, I). `decode` runs the learned prior forward, z_t = m_t + ρ_t·ε_t, so it is deterministic given
the latent: the first static_dim numbers set the digits, the rest their path. Samples are clips
(N, T, C, H, W): the family sets `clips` (genlab/models/base.py), so it trains on clip datasets only
and `genlab sample` writes an animated GIF and a film strip.

Likelihood interface (the nll metric's importance sampling, genlab/metrics/likelihood.py): its
latents are z = [s | z_1 … z_T], whose q(z|x) above is one diagonal Gaussian (the encoder's GRU
reads frames, not earlier latents); log_likelihood(z, x) = Σ_t log p(x_t | s, z_t), and
log_prior(z) = log N(s; 0, I) + Σ_t log N(z_t; m_t, ρ_t²), m_t, ρ_t from the prior's GRU fed
z_0 = 0, z_1, …, z_{t−1}. The mean of log w over draws is the ELBO above estimated by Monte Carlo
instead of in closed form.

Prediction (`continue_clips`, `genlab sample context=K`): s and z_1 … z_K are the posterior means of
the K seen frames (the static head averages the features of whichever frames it is given; the motion
GRU is causal), the prior's GRU reads z_0 … z_K, then z_t = m_t + ρ_t·ε_t for t > K with ε_t ~ N(0, I),
and the frames are sigmoid(D(s, z_t)), the means of p(x_t | s, z_t).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config.checks import ConfigError, require
from genlab.data.batches import Batch
from genlab.models import optim
from genlab.models.base import GenerativeModel
from genlab.models.nets import ConvDecoder, ConvEncoder
from genlab.models.optim import make_optimizer
from genlab.models.vae import gaussian_kl

LOGGED_CLIPS = 8  # clips in each logged film strip (a row of T frames each)


def gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dimension, in nats."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1).sum(-1)


class ClipEncoder(nn.Module):
    """Frames → per-frame features → (μ_s, log σ_s²) of the static latent and (μ_t, log σ_t²) per frame."""

    def __init__(self, frame_shape, width: int, hidden: int, static_dim: int, dynamic_dim: int):
        super().__init__()
        self.frames = ConvEncoder(frame_shape, width, hidden)
        self.static = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * static_dim))
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.dynamic = nn.Linear(hidden, 2 * dynamic_dim)

    def forward(self, x):  # x (N, T, C, H, W)
        n, t = x.shape[:2]
        h = self.frames(x.flatten(0, 1)).view(n, t, -1)
        static = self.static(h.mean(1))
        dynamic = self.dynamic(self.rnn(F.relu(h))[0])
        return static, dynamic


class SpriteDecoder(nn.Module):
    """[s | z_t] → frame logits through `slots` sprites drawn from s and moved by z_t (module docstring)."""

    def __init__(self, frame_shape, width: int, hidden: int, static_dim: int, dynamic_dim: int, slots: int):
        super().__init__()
        self.frame_shape, self.static_dim, self.slots = tuple(frame_shape), static_dim, slots
        size = frame_shape[-1]
        self.sprite_size = max(8, size // 8 * 4)  # half the side, a multiple of 4 (ConvDecoder's sizes)
        self.sprite = ConvDecoder((frame_shape[0], self.sprite_size, self.sprite_size), width, static_dim // slots)
        self.where = nn.Sequential(nn.Linear(dynamic_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * slots))
        self.background = nn.Parameter(torch.tensor(-5.0))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # codes (M, static_dim + dynamic_dim)
        m, (channels, height, width) = codes.shape[0], self.frame_shape
        static, motion = codes[:, : self.static_dim], codes[:, self.static_dim :]
        sprites = self.sprite(static.reshape(m * self.slots, -1)) - self.background
        centres = torch.tanh(self.where(motion)).view(m * self.slots, 2)  # (x, y) in the frame's [−1, 1]
        scale = torch.tensor([width, height], dtype=codes.dtype, device=codes.device) / self.sprite_size
        theta = torch.zeros(m * self.slots, 2, 3, dtype=codes.dtype, device=codes.device)
        theta[:, 0, 0], theta[:, 1, 1] = scale[0], scale[1]
        theta[:, :, 2] = -centres * scale  # frame point p ↦ sprite point (p − c)·scale
        grid = F.affine_grid(theta, [m * self.slots, channels, height, width], align_corners=False)
        placed = F.grid_sample(sprites.to(grid.dtype), grid, padding_mode="zeros", align_corners=False)
        return placed.view(m, self.slots, channels, height, width).amax(1) + self.background


class MotionPrior(nn.Module):
    """p(z_t | z_<t): a GRU over the previous motion latent → (m_t, log ρ_t²)."""

    def __init__(self, hidden: int, dynamic_dim: int):
        super().__init__()
        self.rnn = nn.GRU(dynamic_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * dynamic_dim)

    def forward(self, previous, state=None):  # previous (N, t, dynamic_dim): z_0 = 0, z_1, …
        out, state = self.rnn(previous, state)
        return self.head(out), state


class VideoVAE(GenerativeModel):
    """The sequence VAE above, one Adam/AdamW/SGD optimizer over its three nets."""

    nets = ("encoder", "prior_net", "decoder")
    clips = True
    likelihood = "bernoulli"
    binary_likelihood = True
    directions_title = "static latent (the digits), then motion noise (their path)"

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        self.image_shape = tuple(image_shape)
        self.frames, frame_shape = self.image_shape[0], self.image_shape[1:]
        self.static_dim, self.dynamic_dim, self.beta = model["static_dim"], model["dynamic_dim"], model["beta"]
        hidden = model["hidden"]
        self.encoder = ClipEncoder(frame_shape, model["width"], hidden, self.static_dim, self.dynamic_dim).to(device)
        self.prior_net = MotionPrior(hidden, self.dynamic_dim).to(device)
        self.decoder = (ConvDecoder(frame_shape, model["width"], self.static_dim + self.dynamic_dim)
                        if model["decoder"] == "conv" else
                        SpriteDecoder(frame_shape, model["width"], hidden, self.static_dim, self.dynamic_dim,
                                      model["slots"])).to(device)
        params = [p for name in self.nets for p in getattr(self, name).parameters()]
        self.optimizer = make_optimizer(params, optimizer)
        self.device = device

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "beta", "number", low=0)  # the shorthand first: it is what a user types
        require(cfg, "model.beta", "number", low=0)
        for key in ("static_dim", "dynamic_dim", "hidden", "width"):
            require(cfg, f"model.{key}", "int", low=1)
        require(cfg, "model.lr", "number", low=0, low_open=True)
        require(cfg, "model.decoder", "str", choices=("conv", "sprites"))
        require(cfg, "model.slots", "int", low=1)
        if cfg.model.decoder == "sprites" and cfg.model.static_dim % cfg.model.slots:
            raise ConfigError(f"model.static_dim={cfg.model.static_dim} is not allowed with model.decoder=sprites and "
                              f"model.slots={cfg.model.slots}: each slot takes an equal share of s; use a multiple "
                              f"of {cfg.model.slots}")
        if cfg.dataset.get("frames") == 1:
            raise ConfigError(f"dataset.frames=1 is not allowed with model={cfg.model.name}: its motion prior needs "
                              "clips of at least 2 frames")

    @classmethod
    def migrate(cls, config: dict) -> None:
        config["model"].setdefault("decoder", "conv")  # the only decoder before model.decoder
        config["model"].setdefault("slots", 2)

    # -- the model interface ---------------------------------------------------------------------

    @property
    def latent_size(self) -> int:
        return self.static_dim + self.frames * self.dynamic_dim

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_size, generator=generator)

    def rollout(self, noise: torch.Tensor, z: torch.Tensor | None = None, state: torch.Tensor | None = None) -> torch.Tensor:
        """Motion latents (N, t, dynamic_dim) drawn from the learned prior with noise ε (N, t, dynamic_dim),
        after the latent z (N, 1, dynamic_dim; default z_0 = 0) and the prior's GRU state (default: none)."""
        z = noise.new_zeros(noise.shape[0], 1, self.dynamic_dim) if z is None else z
        zs = []
        for t in range(noise.shape[1]):
            out, state = self.prior_net(z, state)
            mean, logvar = out.chunk(2, dim=-1)
            z = mean + (0.5 * logvar).exp() * noise[:, t : t + 1]
            zs.append(z)
        return torch.cat(zs, 1)

    def render(self, static: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, C, H, W) of p(x_t | s, z_t)."""
        n, t = motion.shape[:2]
        codes = torch.cat([static[:, None].expand(-1, t, -1), motion], -1)
        return self.decoder(codes.flatten(0, 1)).view(n, t, *self.image_shape[1:])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Clips in [0, 1], (N, T, C, H, W), for latents [s | ε_1 … ε_T] (on any device)."""
        latents = latents.to(self.device)
        static = latents[:, : self.static_dim]
        noise = latents[:, self.static_dim :].reshape(-1, self.frames, self.dynamic_dim)
        return torch.sigmoid(self.render(static, self.rollout(noise)))

    def _parts(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s (N, static_dim) and z (N, T, dynamic_dim) of likelihood-interface latents, float32 on the model's device."""
        latents = latents.to(self.device, torch.float32)
        return latents[:, : self.static_dim], latents[:, self.static_dim :].reshape(-1, self.frames, self.dynamic_dim)

    def posterior(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(s, z_1 … z_T | x), flat [s | z_1 … z_T] (N, static_dim + T·dynamic_dim)."""
        static, dynamic = self.encoder(clips.to(self.device))
        (mu_s, logvar_s), (mu_z, logvar_z) = static.chunk(2, -1), dynamic.chunk(2, -1)
        return torch.cat([mu_s, mu_z.flatten(1)], 1), torch.cat([logvar_s, logvar_z.flatten(1)], 1)

    def log_likelihood(self, latents: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """Σ_t log p(x_t | s, z_t) per clip (N,), Bernoulli over every pixel, in nats."""
        logits = self.render(*self._parts(latents))
        return -F.binary_cross_entropy_with_logits(logits, clips.to(logits), reduction="none").flatten(1).sum(1)

    def log_prior(self, latents: torch.Tensor) -> torch.Tensor:
        """log p(s) + Σ_t log p(z_t | z_<t) per latent (N,), the learned prior on the motion, in nats."""
        static, motion = self._parts(latents)
        previous = torch.cat([motion.new_zeros(motion.shape[0], 1, self.dynamic_dim), motion[:, :-1]], 1)
        mean, logvar = self.prior_net(previous)[0].chunk(2, -1)
        log_motion = -0.5 * (logvar + (motion - mean).square() / logvar.exp() + math.log(2 * math.pi))
        return super().log_prior(static) + log_motion.flatten(1).sum(1)

    @torch.no_grad()
    def continue_clips(self, context: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The T − K frames after the K of `context` (N, K, C, H, W) in [0, 1] (see the module docstring)."""
        static, dynamic = self.encoder(context.to(self.device))
        seen = dynamic.chunk(2, -1)[0]
        _, state = self.prior_net(torch.cat([seen.new_zeros(seen.shape[0], 1, self.dynamic_dim), seen[:, :-1]], 1))
        noise = torch.randn(seen.shape[0], self.frames - seen.shape[1], self.dynamic_dim, generator=generator)
        motion = self.rollout(noise.to(self.device), seen[:, -1:], state)
        return torch.sigmoid(self.render(static.chunk(2, -1)[0], motion))

    def directions(self, count: int, generator: torch.Generator,
                   images: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """Latent coordinates for `genlab explore`'s sliders, named by what they move: the static
        coordinates s[i] (the digits: the same code in every frame) and the motion noise ε_t[d] (the
        path). The first ten (those the page shows unfolded) are five of each; the rest follow in order."""
        static = [(i, f"static s[{i}] (digits)") for i in range(self.static_dim)]
        motion = [(self.static_dim + t * self.dynamic_dim + d, f"motion ε{t + 1}[{d}] (path)")
                  for t in range(self.frames) for d in range(self.dynamic_dim)]
        order = static[:5] + motion[:5] + static[5:] + motion[5:]
        chosen = order[:count]
        return torch.eye(self.latent_size)[[i for i, _ in chosen]], [name for _, name in chosen]

    @torch.no_grad()
    def reconstruct(self, clips: torch.Tensor) -> torch.Tensor:
        """The decoded posterior means of clips in [0, 1]."""
        static, dynamic = self.encoder(clips.to(self.device))
        return torch.sigmoid(self.render(static.chunk(2, -1)[0], dynamic.chunk(2, -1)[0]))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.images  # (N, T, C, H, W) in [0, 1]
        static, dynamic = self.encoder(x)
        mu_s, logvar_s = static.chunk(2, -1)
        mu_z, logvar_z = dynamic.chunk(2, -1)
        s = mu_s + batch.noise(mu_s.shape, mu_s.dtype) * (0.5 * logvar_s).exp()
        z = mu_z + batch.noise(mu_z.shape, mu_z.dtype) * (0.5 * logvar_z).exp()
        previous = torch.cat([z.new_zeros(z.shape[0], 1, self.dynamic_dim), z[:, :-1]], 1)
        mu_p, logvar_p = self.prior_net(previous)[0].chunk(2, -1)
        recon = F.binary_cross_entropy_with_logits(self.render(s, z).float(), x, reduction="none").flatten(1).sum(1)
        kl_static = gaussian_kl(mu_s.float(), logvar_s.float())
        kl_motion = gaussian_kl_between(mu_z.float(), logvar_z.float(), mu_p.float(), logvar_p.float()).sum(1)
        kl = kl_static + kl_motion
        loss = (recon + self.beta * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        optim.backward(loss, self.optimizer)
        optim.step(self.optimizer)
        recon, kl_static, kl_motion = recon.detach().mean(), kl_static.detach().mean(), kl_motion.detach().mean()
        neg_elbo = recon + kl_static + kl_motion
        return {"recon_nats": recon, "kl_nats": kl_static + kl_motion, "kl_static_nats": kl_static,
                "kl_motion_nats": kl_motion, "loss_nats": loss.detach(), "neg_elbo_nats": neg_elbo,
                "neg_elbo_nats_per_frame": neg_elbo / self.frames}

    @torch.no_grad()
    def image_grids(self, real: torch.Tensor, generator: torch.Generator) -> dict[str, tuple[torch.Tensor, int]]:
        """Film strips (one clip per row of T frames): samples, and real clips each above its reconstruction."""
        self.train(False)
        real = real[: LOGGED_CLIPS // 2]
        pairs = torch.stack([real.to(self.device), self.reconstruct(real)], 1).flatten(0, 1)
        grids = {"samples": (self.sample(LOGGED_CLIPS, generator).flatten(0, 1), self.frames),
                 "reconstructions": (pairs.flatten(0, 1), self.frames)}
        self.train(True)
        return grids

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"video_vae": self.optimizer}

    def state_dict(self) -> dict:
        return {**{name: getattr(self, name).state_dict() for name in self.nets}, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for name in self.nets:
            getattr(self, name).load_state_dict(state[name])
        self.optimizer.load_state_dict(state["optimizer"])
