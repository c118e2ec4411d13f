"""The GAN family's networks, one pair per `model.arch`; genlab/models/gan.py wraps them with the
label embedding, the projection and the classifier head, so the rest of genlab never sees which
pair it runs.

What gan.py asks of a pair, images in [−1, 1] on both sides:

    generator      G(v) → images,  v = z, or [z, e_G(y)] for the cgan;  first_activations(v): the
                   activations after the first layer (what GANSpace runs its PCA on)
    discriminator  features(x) → φ(x) of size flat_features;  head: Linear(flat_features, 1)

dcgan (default; Radford et al. 2016): genlab/models/nets.py's conv stacks with BatchNorm, ReLU in G,
LeakyReLU(0.2) in D, tanh output, DCGAN's initialisation.

infogan: the networks of Lucic et al. 2018 ("Are GANs Created Equal? A Large-Scale Study"), read from
their code (google/compare_gan, branch v1, compare_gan/src/gans/abstract_gan.py and ops.py), which
calls them "based on InfoGAN" (Chen et al. 2016). With w = model.width (w = 64 is theirs) and
S = image size / 4 (7 for MNIST); every conv 4×4, stride 2, padding 1 (TF's SAME for these sizes):

    G: FC 16w, BN, LReLU → FC 2w·S·S, BN, LReLU → deconv w, BN, LReLU → deconv C → sigmoid
    D: conv w, LReLU → conv 2w, BN, LReLU → FC 16w, BN, LReLU → FC 1       (LReLU slope 0.2)

Their G uses LeakyReLU(0.2), not the ReLU of the paper's architecture table; this follows the code
that made their numbers. Their G draws images in [0, 1] (a sigmoid) and their D reads [0, 1]; here
G returns 2σ(a) − 1 and D maps x back to (x + 1)/2 first, so with genlab's [−1, 1] convention both
compute exactly their functions. Their BatchNorm (tf.contrib.layers.batch_norm) has ε = 10⁻³ and
moving averages with decay 0.999, i.e. PyTorch's momentum 10⁻³; PyTorch's running variance is the
unbiased one (n/(n − 1) times TF's, 1.6% for the FC layers' batch of 64). Initialisation as their
ops.py: conv weights ~ N(0, 0.02²) truncated at ±2σ, linear and deconv weights ~ N(0, 0.02²),
biases 0, BatchNorm γ = 1, β = 0; every layer has a bias, as theirs do.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.models.nets import ConvDecoder, ConvEncoder, check_image_size, dcgan_init

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
    def __init__(self, image_shape, width: int):
        super().__init__(image_shape, width, 1, norm=True, slope=0.2)
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


class InfoGANGenerator(nn.Module):
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

    def first_activations(self, v: torch.Tensor) -> torch.Tensor:
        return self.first(v)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(self.rest(self.first(v))) - 1  # their sigmoid image, in [−1, 1]


class InfoGANDiscriminator(nn.Module):
    def __init__(self, image_shape, width: int):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        s = size // 4
        self.convs = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width, **TF_BN), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * s * s, 16 * width), nn.BatchNorm1d(16 * width, **TF_BN), nn.LeakyReLU(0.2))
        self.flat_features = 16 * width
        self.head = nn.Linear(self.flat_features, 1)
        self.apply(tf_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs((x + 1) / 2)  # their D reads images in [0, 1]


ARCHS = {"dcgan": (DCGANGenerator, DCGANDiscriminator), "infogan": (InfoGANGenerator, InfoGANDiscriminator)}
