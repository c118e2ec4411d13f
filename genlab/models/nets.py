"""Convolutional blocks sized from the image shape, shared by every model.

A stack of 4×4, stride-2 convolutions halves the image until it is 4 px (or odd, e.g. 28 → 14 → 7),
with `width·2^i` channels at layer i (capped at 8·width); the decoder mirrors it with transposed
convolutions (Radford et al. 2016, DCGAN). Supported sizes are those that halve at least twice:
multiples of 4 from 8 px up (28, 32 and 64 included). `dcgan_init` is DCGAN's initialisation:
conv and linear weights ~ N(0, 0.02²), BatchNorm scales ~ N(1, 0.02²), biases 0.
"""

from __future__ import annotations

from torch import nn


def feature_sizes(image_size: int) -> list[int]:
    """Spatial sizes after each downsampling: 64 → [32, 16, 8, 4], 28 → [14, 7]."""
    sizes = []
    while image_size % 2 == 0 and image_size > 4:
        image_size //= 2
        sizes.append(image_size)
    return sizes


def check_image_size(image_size: int) -> None:
    if image_size < 8 or image_size % 4:
        raise ValueError(f"image size {image_size} px is not supported: use a multiple of 4, at least 8 (e.g. 28, 32, 64)")


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016's initialisation, for `net.apply(dcgan_init)`; other layers keep theirs."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _widths(image_size: int, width: int) -> list[int]:
    return [width * min(2**i, 8) for i in range(len(feature_sizes(image_size)))]


class ConvEncoder(nn.Module):
    """image (N, C, S, S) → features (N, out_features)."""

    def __init__(self, image_shape, width: int, out_features: int, *, norm: bool = False, slope: float = 0.0):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        layers, in_ch = [], channels
        for i, out_ch in enumerate(_widths(size, width)):
            layers.append(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=not (norm and i > 0)))
            if norm and i > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(slope) if slope else nn.ReLU())
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        self.flat_features = in_ch * feature_sizes(size)[-1] ** 2
        self.head = nn.Linear(self.flat_features, out_features)

    def features(self, x):
        return self.convs(x).flatten(1)

    def forward(self, x):
        return self.head(self.features(x))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm with a learned gain and bias per class: γ_y·x̂ + β_y, with γ_y = 1, β_y = 0 at the start.

    De Vries et al. 2017 ("Modulating early visual processing by language"); the generator's
    conditioning in Miyato & Koyama 2018 and BigGAN (Brock et al. 2019).
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain, self.bias = nn.Embedding(num_classes, channels), nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x, labels):
        return self.norm(x) * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class ConvDecoder(nn.Module):
    """vector (N, in_features) [+ labels (N,) when num_classes > 0] → image logits (N, C, S, S).

    norm=True puts BatchNorm after the projection and every hidden transposed convolution;
    num_classes > 0 puts ConditionalBatchNorm2d there instead (with or without norm).
    """

    def __init__(self, image_shape, width: int, in_features: int, *, norm: bool = False, num_classes: int = 0):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        widths = _widths(size, width)[::-1]
        self.start = (widths[0], feature_sizes(size)[-1])
        self.head = nn.Linear(in_features, widths[0] * self.start[1] ** 2)

        def normalise(ch: int) -> nn.Module:
            if num_classes:
                return ConditionalBatchNorm2d(ch, num_classes)
            return nn.BatchNorm2d(ch) if norm else nn.Identity()

        layers = [normalise(widths[0]), nn.ReLU()]
        for i, (in_ch, out_ch) in enumerate(zip(widths, widths[1:] + [channels])):
            last = i == len(widths) - 1
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=last or not (norm or num_classes)))
            if not last:
                layers += [normalise(out_ch), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z, labels=None):
        ch, size = self.start
        x = self.head(z).view(-1, ch, size, size)
        for layer in self.deconvs:
            x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x
