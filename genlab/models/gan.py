"""GAN and class-conditional GAN: DCGAN, InfoGAN or InfoGAN-CR networks, non-saturating or hinge loss, an EMA generator.

One module just past ~350 lines on purpose: a family is one module plus one YAML (DESIGN.md), and the
class-conditional GAN is the GAN's update rule with labels; the networks are in gan_nets.py.

Networks, picked by `model.arch` (genlab/models/gan_nets.py): `dcgan` (default; Radford et al. 2016,
"Unsupervised Representation Learning with Deep Convolutional GANs"): the generator maps z ~ N(0, I)
through a linear projection and stride-2 transposed convolutions with BatchNorm + ReLU to tanh output
x̃ in [−1, 1] (images in [0, 1] are (x̃ + 1)/2); the discriminator maps an image scaled to [−1, 1]
through stride-2 convolutions with LeakyReLU(0.2) (BatchNorm after all but the first) to features φ(x)
and a real-valued score (a logit). `infogan`: the networks of Lucic et al. 2018's study, two FC and
two (de)conv layers each. `infogan_cr`: InfoGAN-CR's dSprites networks (Lin et al. 2020), with
spectral normalisation on every layer of D; for the cgan the projection embedding e_D and the
auxiliary classifier below are spectrally normalised too. Either way:

    gan:   D(x)    = w·φ(x) + b
    cgan:  D(x, y) = w·φ(x) + b + e_D(y)·φ(x)      projection discriminator (Miyato & Koyama 2018,
                                                   "cGANs with Projection Discriminator")
           G(z, y) = G([z, e_G(y)])                learned label embedding e_G(y) concatenated to z

Weights start from N(0, 0.02²) (gan_nets.py has each arch's details); e_G keeps N(0, 1) (the scale of
z), e_D starts at N(0, 0.02²).

Losses per image, with σ the logistic sigmoid, softplus(t) = log(1 + eᵗ) and x̃ = G(z, y):

    nonsaturating (Goodfellow et al. 2014, "Generative Adversarial Nets", §3), in nats:
        L_D = −log σ(D(x)) − log(1 − σ(D(x̃)))  =  softplus(−D(x)) + softplus(D(x̃))
        L_G = −log σ(D(x̃))                      =  softplus(−D(x̃))
    hinge (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, "Spectral Normalization for GANs"):
        L_D = max(0, 1 − D(x)) + max(0, 1 + D(x̃))
        L_G = −D(x̃)
    plus, for D, the R1 penalty on real images x in [−1, 1] (Mescheder et al. 2018, "Which
    Training Methods for GANs do actually Converge?"):
        R1 = (γ/2)·‖∇_x D(x)‖²,   γ = r1_gamma (0 turns it off)
    Why gan uses γ = 10 and cgan γ = 1: docs/gan-shapes.md.

Mode seeking (Mao et al. 2019, "Mode Seeking Generative Adversarial Networks for Diverse Image
Synthesis", eq. 3 as in their code): the generator's batch is drawn as pairs (i, h + i), h = ⌊n/2⌋,
that share a label, and λ = mode_seeking (0 turns it off) adds to L_G

    L_ms = λ / (r + 10⁻⁵),   r = mean|x̃_i − x̃_{h+i}| / mean|z_i − z_{h+i}|     (x̃ in [−1, 1])

so G is paid for letting different z give different images. The cgan needs it on shapes, where
without it the EMA generator drew one blur per class (docs/gan-shapes.md).

Auxiliary classifier (cgan; Odena, Olah & Shlens 2017, "Conditional Image Synthesis with Auxiliary
Classifier GANs"), a linear head on D's features beside the projection: class logits
ℓ(x) = W_c·φ(x) + b_c, and with w = class_loss (0 turns it off)

    L_D += w·CE(ℓ(x), y)     on real images only, so it is a classifier of the data, not of G's errors
    L_G += w·CE(ℓ(x̃), y)     CE(ℓ, y) = −log softmax(ℓ)_y = logsumexp(ℓ) − ℓ_y, in nats

(Odena et al. also train it on fakes). Without it the projection alone did not make the cgan
draw its class on shapes (docs/gan-shapes.md, with what is still open).

InfoGAN's mutual-information term (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by
Information Maximizing Generative Adversarial Nets", eq. 5, with a factored Gaussian Q of unit
variance as InfoGAN-CR's code, gan/latent.py `reg_log_prob` with q_std = 1): with k = info_codes and
λ_I = info_weight > 0, the first k entries c of z are codes, a head Q on D's features (FC, LeakyReLU(0.2),
FC k; spectrally normalised with infogan_cr, as theirs) estimates them from x̃ = G(z), and

    L_I = ½‖Q(φ(x̃)) − c‖²      (−log N(c; Q(φ(x̃)), I) up to a constant: the variational bound on I(c; x̃))

is added with weight λ_I to L_D (training Q and D's trunk) and to L_G. `prior=uniform` draws z ~ U(−1, 1)
(InfoGAN-CR's latent) as erf(n/√2) of the usual N(0, I) draws n: Φ(n) ~ U(0, 1), so 2Φ(n) − 1 = erf(n/√2)
is exactly uniform and every draw still comes from the batch's noise stream.

One train_step = `d_steps` discriminator updates, each on the same real batch with fresh z, then
`g_steps` generator updates, each with fresh z (InfoGAN-CR's code updates G twice per D update). D's
learning rate is the optimizer's times `d_lr_scale` (two time-scale updates, Heusel et al. 2017;
InfoGAN-CR: G 1e-3, D 2e-3). Fake images take the real batch's labels, so the cGAN's fakes follow
the data's class frequencies. All noise comes from torch's global RNG (seeded by the run and saved
in its checkpoints), so runs repeat exactly on the CPU.

EMA generator: samples and grids come from an exponential moving average of G's weights, updated
after each generator update (genlab/models/ema.py; `ema_decay` = 0 makes it a copy of G).

Sliders of `genlab explore` (`directions`): GANSpace (Härkönen, Hertzmann, Lehtinen & Paris 2020,
"GANSpace: Discovering Interpretable GAN Controls", §2.2 for BigGAN). Draw N = GANSPACE_SAMPLES
z_j ~ N(0, I) (cgan: with uniform classes c_j), take the EMA generator's first activations
a_j = f(BN(W·[z_j, e(c_j)] + b)) (its first layer; f = ReLU for dcgan, LeakyReLU(0.2) for infogan),
centre them (cgan: per class, so the directions describe what the noise changes within a class),
and find their top k principal directions V_k (randomized PCA, Halko et al. 2011). The PCA
coordinates x_j = V_kᵀ(a_j − ā) are transferred to z-space by least-squares regression,
U = argmin_U Σ_j ‖U x_j − z_j‖², and each column of U, normalized to unit length, is one direction,
named with its share of the variance.

Logged scalars (per image, averaged over the d_steps updates where they come from D and the g_steps
updates where they come from G):
    d_loss, g_loss        L_D (without R1) and L_G
    r1_grad_sq            ‖∇_x D(x)‖² on the real batch
    d_real, d_fake        nonsaturating: mean σ(D(x)), σ(D(x̃)), the probability D gives "real";
                          hinge: the mean raw scores D(x), D(x̃)
    g_diversity           r above, over the generator's batch (whether or not L_ms is on)
    d_grad_norm, g_grad_norm   global L2 norm of each network's gradient (D's including R1)
                          before its optimizer step
    real_class_acc, fake_class_acc   cgan with class_loss > 0: how often D's auxiliary classifier
                          gives the real batch its labels, and G's batch the labels G was given
    info_loss             info_weight > 0: L_I on the D updates' generated batches
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config.checks import ConfigError, require
from genlab.data.batches import Batch
from genlab.models import optim
from genlab.models.base import GenerativeModel
from genlab.models.ema import average_of, require_decay, update_average
from genlab.models.gan_nets import ARCHS
from genlab.models.optim import make_optimizer


GANSPACE_SAMPLES = 4096  # z drawn for the GANSpace PCA of `directions`


class Generator(nn.Module):
    """(z, labels) → images in [−1, 1] through the `arch` generator; labels are used only when num_classes > 0."""

    def __init__(self, image_shape, arch: str, width: int, latent_dim: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.net = ARCHS[arch][0](image_shape, width, latent_dim + (embed_dim if num_classes else 0))

    def inputs(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The network's input: z, with the label embedding e_G(y) appended for a conditional model."""
        return z if self.embed is None else torch.cat([z, self.embed(labels)], 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.inputs(z, labels))


class Discriminator(nn.Module):
    """(images in [−1, 1], labels) → (scores (N,), class logits (N, K) or None).

    The projection term is there when num_classes > 0, the auxiliary classifier when also `classify`.
    """

    def __init__(self, image_shape, arch: str, width: int, num_classes: int, classify: bool = False,
                 batchnorm: bool | None = None, codes: int = 0):
        super().__init__()
        self.net = ARCHS[arch][1](image_shape, width, **({} if batchnorm is None else {"batchnorm": batchnorm}))
        self.project = nn.Embedding(num_classes, self.net.flat_features) if num_classes else None
        if self.project is not None:
            nn.init.normal_(self.project.weight, 0.0, 0.02)
        self.classifier = nn.Linear(self.net.flat_features, num_classes) if num_classes and classify else None
        features = self.net.flat_features
        self.q = (nn.Sequential(nn.Linear(features, features), nn.LeakyReLU(0.2), nn.Linear(features, codes))
                  if codes else None)
        if getattr(self.net, "spectral_norm", False):  # the pair's own layers are normalised: these too
            for module in (self.project, self.classifier, *(self.q or [])):
                if isinstance(module, (nn.Embedding, nn.Linear)):
                    torch.nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        """(scores (N,), class logits (N, K) or None, code estimates (N, info_codes) or None)."""
        features = self.net.features(x)
        score = self.net.head(features).squeeze(1)
        if self.project is not None:
            score = score + (self.project(labels) * features).sum(1)
        logits = None if self.classifier is None else self.classifier(features)
        return score, logits, None if self.q is None else self.q(features)


def diversity_ratio(images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mode seeking's r: mean |x̃_i − x̃_{h+i}| over mean |z_i − z_{h+i}| for pairs i < h = ⌊n/2⌋."""
    half = len(z) // 2
    image_gap = (images[:half] - images[half : 2 * half]).abs().mean()
    return (image_gap / (z[:half] - z[half : 2 * half]).abs().mean()).float()


def _grad_norm(module: nn.Module) -> torch.Tensor:
    return torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None])


class GAN(GenerativeModel):
    """Unconditional GAN with two optimizers (same optimizer section, one per network)."""

    nets = ("generator", "discriminator")
    conditional = False  # CGAN: labels feed G and D
    directions_title = "principal directions (GANSpace)"

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.loss = model["latent_dim"], model["loss"]
        self.d_steps, self.ema_decay, self.r1_gamma = model["d_steps"], model["ema_decay"], model["r1_gamma"]
        self.g_steps = model["g_steps"]
        self.mode_seeking = model["mode_seeking"]
        self.uniform_prior = model["prior"] == "uniform"
        self.info_codes, self.info_weight = model["info_codes"], model["info_weight"]
        self.num_classes = num_classes if self.conditional else None
        self.class_loss = model["class_loss"] if self.conditional else 0.0
        classes, embed_dim = (num_classes, model["embed_dim"]) if self.conditional else (0, 0)
        arch, width = model["arch"], model["width"]
        self.generator = Generator(image_shape, arch, width, self.latent_dim, classes, embed_dim).to(device)
        self.discriminator = Discriminator(image_shape, arch, width, classes, self.class_loss > 0,
                                           model["d_batchnorm"], self.info_codes).to(device)
        self.generator_ema = average_of(self.generator)
        self.ema_updates = 0
        self.g_optimizer = make_optimizer(self.generator.parameters(), optimizer)
        self.d_optimizer = make_optimizer(self.discriminator.parameters(),
                                          {**optimizer, "lr": optimizer["lr"] * model["d_lr_scale"]})
        self.device = device

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "model.arch", "str", choices=tuple(ARCHS))
        require(cfg, "model.latent_dim", "int", low=1)
        require(cfg, "model.width", "int", low=1)
        require(cfg, "model.d_batchnorm", "bool", choices=(None, True, False))
        if cfg.model.arch == "infogan_cr" and cfg.model.d_batchnorm is True:
            raise ConfigError("model.d_batchnorm=true is not allowed with model.arch=infogan_cr: its discriminator has "
                              "spectral norm and no BatchNorm; drop model.d_batchnorm or set it to false")
        require(cfg, "model.lr", "number", low=0, low_open=True)
        require(cfg, "model.loss", "str", choices=("nonsaturating", "hinge"))
        require(cfg, "model.d_steps", "int", low=1)
        require(cfg, "model.g_steps", "int", low=1)
        require(cfg, "model.d_lr_scale", "number", low=0, low_open=True)
        require(cfg, "model.r1_gamma", "number", low=0)
        require(cfg, "model.mode_seeking", "number", low=0)
        require(cfg, "model.prior", "str", choices=("normal", "uniform"))
        require(cfg, "model.info_codes", "int", low=0)
        if cfg.model.info_codes > cfg.model.latent_dim:
            raise ConfigError(f"model.info_codes={cfg.model.info_codes} is more than z's {cfg.model.latent_dim} "
                              "dimensions: lower it, or raise noise_dim")
        require(cfg, "model.info_weight", "number", low=0)
        if cfg.model.info_weight > 0 and cfg.model.info_codes == 0:
            raise ConfigError(f"model.info_weight={cfg.model.info_weight} needs model.info_codes > 0: name how many of "
                              "z's dimensions the Q head recovers (InfoGAN-CR: 5), or set model.info_weight=0")
        if cfg.model.info_codes > 0 and cfg.model.info_weight == 0:
            raise ConfigError(f"model.info_codes={cfg.model.info_codes} does nothing with model.info_weight=0: set "
                              "model.info_weight (InfoGAN-CR: 0.05), or model.info_codes=0")
        require(cfg, "trainer.batch_size", "int", low=2)  # the generator's batch is drawn in pairs
        require_decay(cfg)
        if cfg.hardware.precision == "fp16" and cfg.model.r1_gamma > 0:
            raise ConfigError(f"hardware.precision=fp16 is not allowed with model.r1_gamma={cfg.model.r1_gamma}: R1's "
                              "double backward through BatchNorm overflows fp16 (NaN gradients at every step); use "
                              "hardware.precision=bf16 or fp32, or model.r1_gamma=0")

    @classmethod
    def migrate(cls, config: dict) -> None:
        config["model"].setdefault("mode_seeking", 0.0)  # added after the first checkpoints: they ran without it
        config["model"].setdefault("arch", "dcgan")  # the only networks before model.arch
        config["model"].setdefault("g_steps", 1)  # one G update per step, one learning rate, before these keys
        config["model"].setdefault("d_lr_scale", 1.0)
        config["model"].setdefault("d_batchnorm", None)  # each arch's own D, before the switch
        config["model"].setdefault("prior", "normal")  # z ~ N(0, I) and no Q head before these keys
        config["model"].setdefault("info_codes", 0)
        config["model"].setdefault("info_weight", 0.0)
        config.pop("beta", None)  # the VAE's shorthand, at the top of every run's config before it moved to vae.yaml

    def _from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        """z from N(0, I) draws: themselves, or 2Φ(n) − 1 = erf(n/√2) ~ U(−1, 1) for the uniform prior."""
        return torch.erf(noise / 2**0.5) if self.uniform_prior else noise

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._from_normal(torch.randn(n, self.latent_dim, generator=generator))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from the EMA generator for latents z (and class labels, cgan)."""
        labels = None if labels is None else labels.to(self.device)
        return (self.generator_ema(latents.to(self.device), labels) + 1) / 2

    def _noise(self, batch: Batch) -> torch.Tensor:
        return self._from_normal(batch.noise((batch.images.shape[0], self.latent_dim)))

    def _info_loss(self, codes: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """InfoGAN's L_I: the batch mean of Σ_k ½(q_k − z_k)² over z's first info_codes entries; 0 without a Q head."""
        if codes is None:
            return torch.zeros((), device=self.device)
        return 0.5 * (codes.float() - z[:, : self.info_codes]).pow(2).sum(1).mean()

    def _d_loss(self, real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
        if self.loss == "hinge":
            return (F.relu(1 - real_score) + F.relu(1 + fake_score)).mean()
        return (F.softplus(-real_score) + F.softplus(fake_score)).mean()

    def _g_loss(self, fake_score: torch.Tensor) -> torch.Tensor:
        return (-fake_score if self.loss == "hinge" else F.softplus(-fake_score)).mean()

    def _shown(self, score: torch.Tensor) -> torch.Tensor:
        """What d_real / d_fake report: σ(score) for the nonsaturating loss, the raw score for hinge."""
        return (score if self.loss == "hinge" else torch.sigmoid(score)).detach().mean()

    def _classified(self, logits: torch.Tensor | None, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy of D's auxiliary classifier against the labels, its accuracy); 0, 0 without one."""
        if logits is None:
            return torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        return F.cross_entropy(logits.float(), labels), (logits.argmax(1) == labels).float().mean().detach()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        real = (batch.images * 2 - 1).requires_grad_(self.r1_gamma > 0)
        labels = batch.labels if self.conditional else None
        n = real.shape[0]
        d_stats = []
        for _ in range(self.d_steps):
            z = self._noise(batch)
            with torch.no_grad():
                fake = self.generator(z, labels)
            real_score, real_logits, _ = self.discriminator(real, labels)
            fake_score, _, fake_codes = self.discriminator(fake, labels)
            real_score, fake_score = real_score.float(), fake_score.float()
            d_loss = self._d_loss(real_score, fake_score)
            class_loss, real_class_acc = self._classified(real_logits, labels)
            info_loss = self._info_loss(fake_codes, z)
            grad_sq = torch.zeros((), device=self.device)
            if self.r1_gamma > 0:
                scale = optim.loss_scale(self.d_optimizer)  # under fp16, keeps ∇x D(x) from underflowing
                (grad,) = torch.autograd.grad(real_score.sum() * scale, real, create_graph=True)
                grad_sq = (grad.float() / scale).pow(2).flatten(1).sum(1).mean()
            self.d_optimizer.zero_grad(set_to_none=True)
            optim.backward(d_loss + self.r1_gamma / 2 * grad_sq + self.class_loss * class_loss
                           + self.info_weight * info_loss, self.d_optimizer)
            optim.unscale(self.d_optimizer)
            d_stats.append(torch.stack([d_loss.detach(), grad_sq.detach(), self._shown(real_score),
                                        self._shown(fake_score), _grad_norm(self.discriminator), real_class_acc,
                                        info_loss.detach()]))
            optim.step(self.d_optimizer)

        # D's weights get no gradient from the generator's loss: skip computing it.
        self.discriminator.requires_grad_(False)
        if labels is not None:  # pairs (i, ⌊n/2⌋ + i) share a label, for diversity_ratio
            labels = torch.cat([labels[: n // 2], labels[: n - n // 2]])
        g_stats = []
        for _ in range(self.g_steps):
            z = self._noise(batch)
            fake = self.generator(z, labels)
            fake_score, fake_logits, fake_codes = self.discriminator(fake, labels)
            g_loss = self._g_loss(fake_score.float())
            class_loss, fake_class_acc = self._classified(fake_logits, labels)
            diversity = diversity_ratio(fake, z)
            total = g_loss + self.class_loss * class_loss + self.info_weight * self._info_loss(fake_codes, z)
            if self.mode_seeking:
                total = total + self.mode_seeking / (diversity + 1e-5)
            self.g_optimizer.zero_grad(set_to_none=True)
            optim.backward(total, self.g_optimizer)
            optim.unscale(self.g_optimizer)
            g_stats.append(torch.stack([g_loss.detach(), diversity.detach(), _grad_norm(self.generator),
                                        fake_class_acc]))
            optim.step(self.g_optimizer)
            update_average(self.generator_ema, self.generator, self.ema_decay, self.ema_updates)
            self.ema_updates += 1
        self.discriminator.requires_grad_(True)

        d_loss, r1_grad_sq, d_real, d_fake, d_grad_norm, real_class_acc, info_loss = torch.stack(d_stats).mean(0)
        g_loss, diversity, g_grad_norm, fake_class_acc = torch.stack(g_stats).mean(0)
        stats = {"d_loss": d_loss, "g_loss": g_loss, "g_diversity": diversity, "d_real": d_real,
                 "d_fake": d_fake, "r1_grad_sq": r1_grad_sq, "d_grad_norm": d_grad_norm, "g_grad_norm": g_grad_norm}
        if self.class_loss:
            stats |= {"real_class_acc": real_class_acc, "fake_class_acc": fake_class_acc}
        if self.info_weight:
            stats["info_loss"] = info_loss
        return stats

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.g_optimizer, "discriminator": self.d_optimizer}

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "generator_ema": self.generator_ema.state_dict(), "ema_updates": self.ema_updates,
                "g_optimizer": self.g_optimizer.state_dict(), "d_optimizer": self.d_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_ema.load_state_dict(state["generator_ema"])
        self.ema_updates = state["ema_updates"]
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])

    @torch.no_grad()
    def directions(self, count: int, generator: torch.Generator,
                   images: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """GANSpace directions in z-space (module docstring), the largest principal direction of the
        first activations first; at most latent_dim of them. `images` is not used."""
        g = self.generator_ema
        z = self.prior(GANSPACE_SAMPLES, generator)
        labels = self.random_labels(GANSPACE_SAMPLES, generator)
        inputs = g.inputs(z.to(self.device), None if labels is None else labels.to(self.device))
        y = g.net.first_activations(inputs).float().cpu()  # BatchNorm in eval mode
        groups = torch.zeros(len(y), dtype=torch.long) if labels is None else labels
        means = torch.zeros(int(groups.max()) + 1, y.shape[1]).index_add_(0, groups, y)
        y = y - (means / torch.bincount(groups, minlength=len(means)).clamp(min=1)[:, None])[groups]
        k = min(count, self.latent_dim, *y.shape)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            _, s, v = torch.pca_lowrank(y, q=min(k + 10, *y.shape), center=False, niter=4)  # oversampled
        s, v = s[:k], v[:, :k]
        u = torch.linalg.lstsq(y @ v, z).solution  # (k, latent_dim): row i maps PCA coordinate i to z
        share = s.pow(2) / y.pow(2).sum()
        return u / u.norm(dim=1, keepdim=True), [f"PC{i} {100 * share[i]:.1f}% var" for i in range(k)]


class CGAN(GAN):
    """Class-conditional GAN: label embedding in G, projection discriminator; classes from the dataset."""

    conditional = True

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        require(cfg, "model.embed_dim", "int", low=1)
        require(cfg, "model.class_loss", "number", low=0)
        from genlab.data import num_classes

        classes = num_classes(cfg.dataset)
        if classes < 2:
            raise ConfigError(f"model=cgan needs a dataset with at least 2 classes, but dataset={cfg.dataset.name} "
                              f"has {classes}: use model=gan")

    @classmethod
    def migrate(cls, config: dict) -> None:
        super().migrate(config)
        config["model"].setdefault("class_loss", 0.0)  # added after the first cgan checkpoints
