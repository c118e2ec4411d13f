"""The GAN family's networks, one pair per `model.arch`; genlab/models/gan.py wraps them with the
label embedding, the projection and the classifier head, so the rest of genlab never sees which
pair it runs.

What gan.py asks of a pair, images in [−1, 1] on both sides:

    generator      G(v) → images,  v = z, or [z, e_G(y)] for the cgan;  first_activations(v): the
                   activations after the first layer (what GANSpace runs its PCA on)
    discriminator  features(x) → φ(x) of size flat_features;  head: Linear(flat_features, 1);
                   built with batchnorm=False for model.d_batchnorm=false (default: the pair's own)

dcgan (default; Radford et al. 2016): genlab/models/nets.py's conv stacks with BatchNorm, ReLU in G,
LeakyReLU(0.2) in D, tanh output, DCGAN's initialisation.

infogan: the networks of Lucic et al. 2018 ("Are GANs Created Equal? A Large-Scale Study"), read from
their code (google/compare_gan, branch v1, compare_gan/src/gans/abstract_gan.py and ops.py), which
calls them "based on InfoGAN" (Chen et al. 2016). With w = model.width (w = 64 is theirs) and
S = image size / 4 (7 for MNIST); every conv 4×4, stride 2, padding 1 (TF's SAME for these sizes):

    G: FC 16w, BN, LReLU → FC 2w·S·S, BN, LReLU → deconv w, BN, LReLU → deconv C → sigmoid
    D: conv w, LReLU → conv 2w, BN, LReLU → FC 16w, BN, LReLU → FC 1       (LReLU slope 0.2)

Their G uses LeakyReLU(0.2), not the ReLU of the paper's architecture table; this follows the code
that made their numbers. D's two BatchNorms are a switch of their search (`discriminator_batchnorm`,
on by default): `model.d_batchnorm=false` removes them. D sees all-real and all-fake batches
separately (their code and gan.py), so its BatchNorm takes each batch's own mean and variance and
hides from D the batch-level difference between real and generated images. Their G draws images
in [0, 1] (a sigmoid) and their D reads [0, 1]; here G returns 2σ(a) − 1 and D maps x back to
(x + 1)/2 first, so with genlab's [−1, 1] convention both compute exactly their functions. Their BatchNorm (tf.contrib.layers.batch_norm) has ε = 10⁻³ and
moving averages with decay 0.999, i.e. PyTorch's momentum 10⁻³; PyTorch's running variance is the
unbiased one (n/(n − 1) times TF's, 1.6% for the FC layers' batch of 64). Initialisation as their
ops.py: conv weights ~ N(0, 0.02²) truncated at ±2σ, linear and deconv weights ~ N(0, 0.02²),
biases 0, BatchNorm γ = 1, β = 0; every layer has a bias, as theirs do.

infogan_cr: the dSprites networks of InfoGAN-CR (Lin, Thekumparampil, Fanti & Oh 2020, "InfoGAN-CR and
ModelCentrality: Self-supervised Model Training and Selection for Disentangling GANs"), read from their
code (fjxmlzn/InfoGAN-CR, InfoGAN-CR_dSprites/gan/network.py: Decoder and InfoGANDiscriminator's
shared trunk and "x" head; op.py; sn.py). With w = model.width (w = 32 is theirs) at 64 px, every
(de)conv 4×4, stride 2, padding 1 (TF's SAME), LReLU slope 0.2:

    G: FC 4w, ReLU, BN → FC 2w·4·4, ReLU, BN → deconv 2w, LReLU, BN → deconv w, LReLU, BN
       → deconv w, LReLU, BN → deconv C → sigmoid
    D: SN conv w, LReLU → SN conv w, LReLU → SN conv 2w, LReLU → SN conv 2w, LReLU
       → SN FC 4w, LReLU → SN FC 1                                  (no BatchNorm in D)

i.e. G: FC 128 → FC 4·4·64 → deconvs 64/32/32 → 1 and D: convs 32/32/64/64 → FC 128 → 1 at w = 32.
Their G applies BatchNorm after the activation (kept here). Other sizes keep the rule "2w channels at
the two smallest resolutions, w above" (32 px: D convs w/2w/2w; 28 px starts G at 7×7). SN is
spectral normalisation (Miyato et al. 2018) with one power iteration per forward pass in training
mode (torch.nn.utils.parametrizations.spectral_norm; theirs, from tf-SNDCGAN, updates u once per
training step) on every D layer, as theirs; genlab/models/gan.py also normalises the cgan's
projection embedding and auxiliary classifier when the pair asks for it (`spectral_norm = True`), as
their Q head (InfoGAN's classifier of the codes) is. BatchNorm: theirs, tf.contrib's with decay 0.9
and ε = 10⁻⁵, is PyTorch's default (momentum 0.1). Images: sigmoid in G and [0, 1] into D, as the
infogan pair. Initialisation: their op.py's, the same as compare_gan's (`tf_init`).
"""

from __future__ import annotations

import torch
from torch import nn

from torch.nn.utils.parametrizations import spectral_norm

from genlab.models.nets import ConvDecoder, ConvEncoder, check_image_size, dcgan_init, feature_sizes

TF_BN = {"eps": 1e-3, "momentum": 1e-3}  # tf.contrib.layers.batch_norm(epsilon=0.001, decay=0.999)


class DCGANGenerator(ConvDecoder):
    def __init__(self, image_shape, width: int, in_features: int):
        super().__init__(image_shape, width, in_features, norm=True)
        self.apply(dcgan_init)

    def first_activations(self, v: torch.Tensor) -> torch.Tensor:
        ch, size = self.start
        return self.deconvs[:2](self.head(v).view(-1, ch, size, size)).flatten(1)  # BatchNorm, ReLU

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(v))


class DCGANDiscriminator(ConvEncoder):
    def __init__(self, image_shape, width: int, batchnorm: bool = True):
        super().__init__(image_shape, width, 1, norm=batchnorm, slope=0.2)
        self.apply(dcgan_init)


def tf_init(module: nn.Module) -> None:
    """compare_gan v1's initialisation (module docstring), for `net.apply(tf_init)`."""
    if isinstance(module, nn.Conv2d):
        nn.init.trunc_normal_(module.weight, 0.0, 0.02, -0.04, 0.04)  # TF's truncated_normal_initializer
    elif isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    else:
        return
    nn.init.zeros_(module.bias)


class SigmoidImageGenerator(nn.Module):
    """The InfoGAN and InfoGAN-CR generators' shape: `first` (the fully connected layers), then
    `rest` (the transposed convolutions) to a sigmoid image, mapped to [−1, 1]."""

    def first_activations(self, v: torch.Tensor) -> torch.Tensor:
        return self.first(v)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(self.rest(self.first(v))) - 1  # their sigmoid image, in [−1, 1]


class InfoGANGenerator(SigmoidImageGenerator):
    def __init__(self, image_shape, width: int, in_features: int):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        s = size // 4
        self.first = nn.Sequential(nn.Linear(in_features, 16 * width), nn.BatchNorm1d(16 * width, **TF_BN),
                                   nn.LeakyReLU(0.2))
        self.rest = nn.Sequential(
            nn.Linear(16 * width, 2 * width * s * s), nn.BatchNorm1d(2 * width * s * s, **TF_BN), nn.LeakyReLU(0.2),
            nn.Unflatten(1, (2 * width, s, s)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width, **TF_BN), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.apply(tf_init)


class InfoGANDiscriminator(nn.Module):
    def __init__(self, image_shape, width: int, batchnorm: bool = True):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        s = size // 4

        def norm(bn: nn.Module) -> list[nn.Module]:  # compare_gan's `discriminator_batchnorm` switch
            return [bn] if batchnorm else []

        self.convs = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), *norm(nn.BatchNorm2d(2 * width, **TF_BN)), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * s * s, 16 * width), *norm(nn.BatchNorm1d(16 * width, **TF_BN)), nn.LeakyReLU(0.2))
        self.flat_features = 16 * width
        self.head = nn.Linear(self.flat_features, 1)
        self.apply(tf_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs((x + 1) / 2)  # their D reads images in [0, 1]


def cr_widths(image_size: int, width: int) -> tuple[list[int], int]:
    """infogan_cr's channels per resolution, largest first (64 px: [w, w, 2w, 2w]), and the smallest size."""
    check_image_size(image_size)
    sizes = feature_sizes(image_size)
    return [width if k < len(sizes) - 2 else 2 * width for k in range(len(sizes))], sizes[-1]


class InfoGANCRGenerator(SigmoidImageGenerator):
    def __init__(self, image_shape, width: int, in_features: int):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        widths, start = cr_widths(size, width)
        up = widths[::-1]  # 64 px: 2w at 4 px (the FC's output), 2w at 8, w at 16, w at 32
        self.first = nn.Sequential(nn.Linear(in_features, 4 * width), nn.ReLU(), nn.BatchNorm1d(4 * width))
        layers = [nn.Linear(4 * width, up[0] * start * start), nn.ReLU(), nn.BatchNorm1d(up[0] * start * start),
                  nn.Unflatten(1, (up[0], start, start))]
        for in_ch, out_ch in zip(up, up[1:]):
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2), nn.BatchNorm2d(out_ch)]
        layers.append(nn.ConvTranspose2d(up[-1], channels, 4, 2, 1))
        self.rest = nn.Sequential(*layers)
        self.apply(tf_init)


class InfoGANCRDiscriminator(nn.Module):
    spectral_norm = True  # gan.py normalises the cgan's projection and classifier too

    def __init__(self, image_shape, width: int, batchnorm: bool = False):
        super().__init__()
        if batchnorm:
            raise ValueError("infogan_cr's discriminator has no BatchNorm (spectral norm instead)")
        channels, size = image_shape[0], image_shape[-1]
        widths, end = cr_widths(size, width)
        layers = []
        for in_ch, out_ch in zip([channels, *widths], widths):
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        layers += [nn.Flatten(), nn.Linear(widths[-1] * end * end, 4 * width), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.flat_features = 4 * width
        self.head = nn.Linear(self.flat_features, 1)
        self.apply(tf_init)
        for module in [*self.convs, self.head]:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                spectral_norm(module)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs((x + 1) / 2)  # their D reads images in [0, 1]


ARCHS = {"dcgan": (DCGANGenerator, DCGANDiscriminator), "infogan": (InfoGANGenerator, InfoGANDiscriminator),
         "infogan_cr": (InfoGANCRGenerator, InfoGANCRDiscriminator)}
