"""Convolutional blocks sized from the image shape, shared by every model.

A stack of 4×4, stride-2 convolutions halves the image until it is 4 px (or odd, e.g. 28 → 14 → 7),
with `width·2^i` channels at layer i (capped at 8·width); the decoder mirrors it with transposed
convolutions (Radford et al. 2016, DCGAN). Supported sizes are those that halve at least twice:
multiples of 4 from 8 px up (28, 32 and 64 included). `dcgan_init` is DCGAN's initialisation:
conv and linear weights ~ N(0, 0.02²), BatchNorm scales ~ N(1, 0.02²), biases 0.

Inference path of the decoder (no autograd, BatchNorm, if any, in eval mode): the same function laid
out for a CPU's throughput, the same logits to float32 rounding (~1e-6 relative; tests/test_fast_paths.py).
The IWAE bound runs it 10⁷ times (genlab/metrics/likelihood.py). Three changes, measured on this
project's 2-core CPU (docs/performance.md):
  - channels-last activations from the start: the head's output rows are permuted to (h, w, c) order,
    so its (N, h·w·c) output is already a channels-last (N, c, h, w) tensor (no layout copy before
    the first transposed convolution; oneDNN's transposed convolution is ~1.5× faster channels-last);
  - ReLU in place;
  - the last transposed convolution (few output channels, e.g. 1 for MNIST) as the equivalent
    3×3 convolution with 4·C outputs followed by pixel_shuffle(2) ("sub-pixel convolution", Shi et al.
    2016): a 4×4 stride-2 transposed convolution gives output pixel (2i + a, 2j + b) from input rows
    i − 1 + a … i + a and the same columns, through kernel taps a + 1 − 2·dy (dy = −1, 0, 1), so each
    output parity is one set of 3×3 weights with zeros where a tap does not exist.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    elif isinstance(module, nn.BatchNorm2d):
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


class ConvDecoder(nn.Module):
    """vector (N, in_features) → image logits (N, C, S, S)."""

    def __init__(self, image_shape, width: int, in_features: int, *, norm: bool = False):
        super().__init__()
        channels, size = image_shape[0], image_shape[-1]
        check_image_size(size)
        widths = _widths(size, width)[::-1]
        self.start = (widths[0], feature_sizes(size)[-1])
        self.head = nn.Linear(in_features, widths[0] * self.start[1] ** 2)
        layers = [nn.BatchNorm2d(widths[0]) if norm else nn.Identity(), nn.ReLU()]
        for i, (in_ch, out_ch) in enumerate(zip(widths, widths[1:] + [channels])):
            last = i == len(widths) - 1
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=last or not norm))
            if not last:
                layers += [nn.BatchNorm2d(out_ch) if norm else nn.Identity(), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        if not torch.is_grad_enabled() and not (self.training and self._has_norm()):
            return self.inference_forward(z)
        ch, size = self.start
        return self.deconvs(self.head(z).view(-1, ch, size, size))

    def _has_norm(self) -> bool:
        return any(isinstance(layer, nn.BatchNorm2d) for layer in self.deconvs)

    @torch.no_grad()
    def inference_forward(self, z):
        """forward(z) without autograd (module docstring); BatchNorm layers, if any, must be in eval mode."""
        ch, size = self.start
        head_weight = self.head.weight.view(ch, size, size, -1).permute(1, 2, 0, 3).reshape(self.head.weight.shape)
        head_bias = self.head.bias.view(ch, size, size).permute(1, 2, 0).reshape(-1)
        x = F.linear(z, head_weight, head_bias).view(-1, size, size, ch).permute(0, 3, 1, 2)  # channels-last
        layers = list(self.deconvs)
        for layer in layers[:-1]:
            if isinstance(layer, nn.ReLU):
                x = x.relu_()
            elif isinstance(layer, nn.ConvTranspose2d):
                x = F.conv_transpose2d(x, layer.weight.contiguous(memory_format=torch.channels_last), layer.bias,
                                       layer.stride, layer.padding)
            else:
                x = layer(x)
        last = layers[-1]
        weight, bias = subpixel_weights(last.weight, last.bias)
        x = F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias, padding=1)
        return F.pixel_shuffle(x, 2).contiguous()  # the layout callers expect (free for one channel)


def subpixel_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A ConvTranspose2d(kernel 4, stride 2, padding 1)'s weight (in, out, 4, 4) and bias (out,) as a
    Conv2d(3×3, padding 1)'s (4·out, in, 3, 3) and (4·out,), whose output through pixel_shuffle(2) is
    the transposed convolution's (module docstring): channel 4·o + 2·a + b holds output parity (a, b)."""
    cin, cout = weight.shape[:2]
    out = weight.new_zeros(cout, 2, 2, cin, 3, 3)
    for a in range(2):
        for b in range(2):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ty, tx = a + 1 - 2 * dy, b + 1 - 2 * dx
                    if 0 <= ty < 4 and 0 <= tx < 4:
                        out[:, a, b, :, dy + 1, dx + 1] = weight[:, :, ty, tx].T
    return out.reshape(4 * cout, cin, 3, 3), None if bias is None else bias.repeat_interleave(4)
