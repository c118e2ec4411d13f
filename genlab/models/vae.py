"""β-VAE: convolutional encoder q(z|x) = N(μ, diag σ²), decoder p(x|z), prior p(z) = N(0, I).

Kingma & Welling 2014 ("Auto-Encoding Variational Bayes"); β weighting from Higgins et al. 2017.
Per image, in nats (images x in [0, 1], D pixels, latent size d):

    z = μ + σ·ε,  ε ~ N(0, I)                                  (reparameterisation)
    recon   = −log p(x|z)
              Bernoulli:  Σ_D BCE(logits, x)  =  Σ_D softplus(l) − x·l
              Gaussian:   Σ_D ½((x − sigmoid(l))/s)² + log s + ½ log 2π,  s = gaussian_std
    kl      = KL(q(z|x) ‖ N(0, I)) = ½ Σ_d (μ² + σ² − 1 − log σ²)      (closed form)
    loss    = recon + β·kl
    neg_elbo = recon + kl          (independent of β, so runs with different β compare)

Active latent units (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders",
§5.2): dimension d is active when A_d = Cov_x(E_q[z_d|x]) = Var_x(μ_d(x)) > 0.01, the variance
(with Bessel's correction) of the posterior mean over data images. An inactive dimension encodes
nothing about x: its posterior has collapsed to the same distribution for every image.

Sliders of `genlab explore` (`directions`): the raw latent coordinates, sorted by their activity
KL_d = mean over images x of ½(μ_d(x)² + σ_d(x)² − 1 − log σ_d(x)²), the d-th term of the KL above
(Burgess et al. 2018, "Understanding disentangling in β-VAE", read the KL of each latent to see which
ones a β-VAE uses: a dimension with KL_d ≈ 0 carries nothing about x, and the decoder ignores it).

Weights used outside training: an exponential moving average of the encoder and the decoder
(genlab/models/ema.py), updated after every step; with `ema_decay` = 0 (the default) these are the
trained weights themselves. Sampling, reconstructions, `genlab eval` (its likelihood bounds are the bounds of
the averaged model, still a VAE at β = 1 when trained so) and `genlab explore` use the average.

Latent traversal (the figure of Higgins et al. 2017): row i decodes z with z_i swept over
[−3, 3] (±3 prior standard deviations) and every other coordinate fixed at one draw from the prior.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.config.checks import require
from genlab.data.batches import Batch
from genlab.models import optim
from genlab.models.base import GenerativeModel
from genlab.models.ema import average_of, require_decay, update_average
from genlab.models.nets import ConvDecoder, ConvEncoder
from genlab.models.optim import make_optimizer

ACTIVE_UNIT_THRESHOLD = 0.01  # on Var_x(μ_d(x)), from Burda et al. 2016, §5.2
ENCODE_CHUNK = 250  # images per encoder call when measuring over many images (bounds memory)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the last dimension, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


TRAVERSAL_RANGE = 3.0  # a traversal sweeps each latent over ±this many prior standard deviations


class VAE(GenerativeModel):
    """A β-VAE with one Adam/AdamW/SGD optimizer over encoder and decoder."""

    nets = ("encoder", "decoder")
    directions_title = "latent dimensions, most active first"

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        self.image_shape, self.device = tuple(image_shape), device
        self.latent_dim, self.beta = model["latent_dim"], model["beta"]
        self.likelihood, self.gaussian_std = model["likelihood"], model["gaussian_std"]
        self.encoder = ConvEncoder(image_shape, model["width"], 2 * self.latent_dim).to(device)
        self.decoder = ConvDecoder(image_shape, model["width"], self.latent_dim).to(device)
        self.ema_decay, self.ema_updates = model["ema_decay"], 0
        if self.ema_decay:
            self.encoder_ema, self.decoder_ema = average_of(self.encoder), average_of(self.decoder)
        else:  # no average: the trained networks themselves, with no copy to update every step
            self.encoder_ema, self.decoder_ema = self.encoder, self.decoder
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = make_optimizer(params, optimizer)

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "beta", "number", low=0)  # the shorthands first: they are what a user types
        require(cfg, "noise_dim", "int", low=1)
        require(cfg, "model.beta", "number", low=0)
        for key in ("latent_dim", "width"):
            require(cfg, f"model.{key}", "int", low=1)
        require(cfg, "model.lr", "number", low=0, low_open=True)
        require(cfg, "model.likelihood", "str", choices=("bernoulli", "gaussian"))
        require(cfg, "model.gaussian_std", "number", low=0, low_open=True)
        require_decay(cfg)

    @classmethod
    def migrate(cls, config: dict) -> None:
        config["model"].setdefault("ema_decay", 0.0)  # added after the first checkpoints: they ran without it

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x)'s mean μ and log-variance log σ² under the averaged encoder."""
        mu, logvar = self.encoder_ema(x).chunk(2, dim=1)
        return mu, logvar

    @property
    def binary_likelihood(self) -> bool:
        return self.likelihood == "bernoulli"

    def log_likelihood(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image under the averaged decoder, in nats (the `nll` metric's interface)."""
        # The IWAE bound costs k·n decoder passes; channels-last convolution weights made the default
        # conv decoder 1.5× faster on this project's 2-core CPU (6,558 against 4,278 passes/s), same logits.
        self.decoder_ema.to(memory_format=torch.channels_last)
        return -self.recon_nats(self.logits(latents).float(), images)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The averaged decoder's logits of p(x|z)."""
        return self.decoder_ema(z)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior mean μ(x) of images in [0, 1]."""
        return self.posterior(images.to(self.device))[0]

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean image in [0, 1] for latents z (on any device)."""
        return torch.sigmoid(self.logits(latents.to(self.device)))

    def recon_nats(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image, summed over pixels."""
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            s = self.gaussian_std
            nll = 0.5 * ((x - torch.sigmoid(logits)) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)
        return nll.flatten(1).sum(1)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.images
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + batch.noise(mu.shape, mu.dtype) * (0.5 * logvar).exp()
        recon = self.recon_nats(self.decoder(z).float(), x)
        kl = gaussian_kl(mu.float(), logvar.float())
        loss = (recon + self.beta * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        optim.backward(loss, self.optimizer)
        optim.step(self.optimizer)
        if self.ema_decay:
            for average, trained in ((self.encoder_ema, self.encoder), (self.decoder_ema, self.decoder)):
                update_average(average, trained, self.ema_decay, self.ema_updates)
        self.ema_updates += 1
        recon, kl = recon.detach().mean(), kl.detach().mean()
        return {"recon_nats": recon, "kl_nats": kl, "beta_kl_nats": self.beta * kl,
                "loss_nats": loss.detach(), "neg_elbo_nats": recon + kl}

    def traversal(self, steps: int, generator: torch.Generator) -> torch.Tensor:
        """Latents (latent_dim·steps, latent_dim): row i sweeps z_i over ±TRAVERSAL_RANGE, the rest stay at one z ~ N(0, I)."""
        d = self.latent_dim
        z = torch.randn(d, generator=generator).repeat(d, steps, 1)
        dims = torch.arange(d)
        z[dims, :, dims] = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps)
        return z.flatten(0, 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def image_grids(self, real: torch.Tensor, generator: torch.Generator) -> dict[str, tuple[torch.Tensor, int]]:
        """Grids to log: name → (images in [0, 1], images per row)."""
        n = real.shape[0]
        self.train(False)
        half = real[: n // 2]
        pairs = torch.stack([half, self.reconstruct(half)], 1).flatten(0, 1)  # original, recon, …
        per_row = max(2, 2 * round(n**0.5 / 2))
        grids = {"samples": (self.sample(n, generator), per_row), "reconstructions": (pairs, per_row)}
        self.train(True)
        return grids

    @torch.no_grad()
    def active_units(self, x: torch.Tensor) -> int:
        """How many latent dimensions are active over the images x (N ≥ 2, in [0, 1])."""
        self.train(False)
        mu = torch.cat([self.encode(chunk).float() for chunk in x.split(ENCODE_CHUNK)])
        self.train(True)
        return int((mu.var(dim=0) > ACTIVE_UNIT_THRESHOLD).sum())

    def final_metrics(self, x: torch.Tensor) -> dict[str, float]:
        """Metrics of the trained model over fixed data images, for the run's result record."""
        return {"active_units": self.active_units(x)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": self.optimizer}

    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict(),
                "encoder_ema": self.encoder_ema.state_dict(), "decoder_ema": self.decoder_ema.state_dict(),
                "ema_updates": self.ema_updates, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "ema_updates" in state:
            self.encoder_ema.load_state_dict(state["encoder_ema"])
            self.decoder_ema.load_state_dict(state["decoder_ema"])
            self.ema_updates = state["ema_updates"]
        else:  # a checkpoint from before the average: it starts at the trained weights, its count at the steps taken
            self.encoder_ema.load_state_dict(state["encoder"])
            self.decoder_ema.load_state_dict(state["decoder"])
            steps = [int(s["step"]) for s in state["optimizer"]["state"].values() if "step" in s]
            self.ema_updates = max(steps, default=0)

    @torch.no_grad()
    def directions(self, count: int, generator: torch.Generator,
                   images: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """The latent coordinates sorted by KL per dimension on `images` (or, without images, on
        ENCODE_CHUNK of the model's own samples), most active first, named with their KL in nats."""
        if images is None:
            images = self.sample(ENCODE_CHUNK, generator)
        was_training = self.encoder.training
        self.train(False)
        kl = torch.zeros(self.latent_dim)
        for chunk in images.split(ENCODE_CHUNK):
            mu, logvar = self.posterior(chunk.to(self.device))
            kl += 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).float().sum(0).cpu()
        self.train(was_training)
        kl /= len(images)
        order = kl.argsort(descending=True, stable=True)[:count]
        return torch.eye(self.latent_dim)[order], [f"z[{d}] KL {kl[d]:.2f} nats" for d in order.tolist()]
