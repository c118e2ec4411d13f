"""Diffusion (EDM): preconditioning, loss weight and training noise against EDM's formulas; the Heun
sampler against EDM's own sampler and against the closed form on Gaussian data; exact resume;
sample, interpolation, `latent=` and explore through the model interface; class-conditional
sampling with classifier-free guidance; config checks. Tiny sizes throughout."""

from __future__ import annotations

import base64
import copy
import functools
import io
import math

import numpy as np
import pytest
import torch
from conftest import TINY, explorer_api
from omegaconf import OmegaConf
from PIL import Image

from genlab.config.compose import compose_jobs
from genlab.config.validate import ConfigError, validate_train
from genlab.data.batches import Batch
from genlab.metrics.evaluation import applicable
from genlab.models import build_model, size_estimate
from genlab.models.diffusion import Denoiser, heun_sample, loss_weight, noise_levels, preconditioning

CPU = torch.device("cpu")
torch.set_num_threads(1)  # tiny networks; the machine is shared
SIGMA_DATA = 0.5

SHAPES = {"name": "shapes"}  # a plain dataset section: the metrics that fit read it


def composed(*overrides: str):
    return compose_jobs("train", ["model=diffusion", *overrides], multirun=False)[0]


@functools.cache
def _plain() -> dict:
    return OmegaConf.to_container(composed("model.width=8", "model.blocks=1"), resolve=True)


def make(image_shape=(1, 16, 16), num_classes: int = 3, **model):
    cfg = copy.deepcopy(_plain())
    cfg["model"].update(model)
    return build_model(cfg["model"], cfg["optimizer"], image_shape, num_classes, CPU)


def batch(n=8, image_shape=(1, 16, 16), num_classes=3, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, *image_shape, generator=g), torch.randint(num_classes, (n,), generator=g))


# -- EDM's formulas ---------------------------------------------------------------------------------

def test_preconditioning_and_loss_weight_are_edms():
    sigma = torch.tensor([0.002, 0.1, 0.5, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, SIGMA_DATA)
    # EDMPrecond.forward and EDMLoss, written out (NVlabs/edm training/networks.py, training/loss.py).
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (0.25 + sigma**2).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    weight = loss_weight(sigma, SIGMA_DATA)
    torch.testing.assert_close(weight, (sigma**2 + 0.25) / (sigma * 0.5) ** 2)
    torch.testing.assert_close(weight * c_out**2, torch.ones_like(sigma))  # eq. 8: unit weight on F's target
    # c_in gives the network input unit variance when the data has std σ_data: Var(c_in·(y + n)) = 1.
    torch.testing.assert_close(c_in**2 * (0.25 + sigma**2), torch.ones_like(sigma))


def test_the_denoiser_wraps_its_network_as_edm_precond():
    net = Denoiser((1, 8, 8), 8, 1, 8, 0.0, 0, SIGMA_DATA)
    seen = {}

    def raw(x, c_noise, onehot):
        seen["x"], seen["c_noise"] = x, c_noise
        return torch.full_like(x, 0.7)

    net.raw = raw
    x, sigma = torch.randn(3, 1, 8, 8), torch.tensor([0.01, 1.0, 30.0])
    d = net(x, sigma)
    s = sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(seen["x"], x / (0.25 + s**2).sqrt())
    torch.testing.assert_close(seen["c_noise"], sigma.log() / 4)
    torch.testing.assert_close(d, 0.25 / (s**2 + 0.25) * x + s * 0.5 / (s**2 + 0.25).sqrt() * 0.7)


def test_a_training_step_minimises_edms_loss_on_its_noise_distribution():
    model = make(class_conditional=False, dropout=0.0)
    b = batch()
    y = b.images * 2 - 1
    torch.manual_seed(5)
    rnd, noise = torch.randn(8, 1, 1, 1), torch.randn(8, 1, 16, 16)  # the step's draws, in its order
    sigma = (rnd * 1.2 - 1.2).exp()  # ln σ ~ N(P_mean, P_std²)
    with torch.no_grad():
        denoised = model.net(y + noise * sigma, sigma)
    expected = ((sigma**2 + 0.25) / (sigma * 0.5) ** 2 * (denoised - y) ** 2).flatten(1).sum(1)
    torch.manual_seed(5)
    stats = model.train_step(b)
    torch.testing.assert_close(stats["weighted_sq_error"], expected.mean())
    torch.testing.assert_close(stats["ln_sigma_mean"], sigma.log().mean())
    assert model.images_seen == 8
    # the learning rate ramps from 0 (EDM's lr_rampup_kimg): the first step changed nothing
    assert model.optimizer.param_groups[0]["lr"] == 0.0


def test_label_dropout_drops_the_share_it_says():
    model = make(label_dropout=0.25)
    kept = []
    model.loss = lambda y, onehot, *rest: (kept.append(onehot.sum(1)), (torch.zeros(len(y), requires_grad=True), torch.ones(len(y))))[1]
    torch.manual_seed(0)
    for _ in range(50):
        model.train_step(batch(n=40))
    kept = torch.cat(kept)
    assert set(kept.tolist()) <= {0.0, 1.0}
    assert abs(1 - kept.mean().item() - 0.25) < 0.03  # 2,000 labels: ±3 standard deviations ≈ 0.029


# -- the sampler ------------------------------------------------------------------------------------

def edm_sampler(net, latents, num_steps=18, sigma_min=0.002, sigma_max=80, rho=7):
    """NVlabs/edm generate.py edm_sampler with S_churn = 0, verbatim apart from the dropped churn."""
    step_indices = torch.arange(num_steps, dtype=torch.float64, device=latents.device)
    t_steps = (sigma_max ** (1 / rho) + step_indices / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t_steps = torch.cat([torch.as_tensor(t_steps), torch.zeros_like(t_steps[:1])])
    x_next = latents.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        t_hat = t_cur
        x_hat = x_cur
        denoised = net(x_hat, t_hat).to(torch.float64)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:
            denoised = net(x_next, t_next).to(torch.float64)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def gaussian_denoiser(mu: float, s: float):
    """The ideal denoiser E[y | y + σn] for data y ~ N(μ, s²) per pixel."""
    return lambda x, sigma: mu + s**2 / (s**2 + sigma**2) * (x - mu)


def test_noise_levels_are_edms_schedule():
    t = noise_levels(18, 0.002, 80.0, 7.0)
    assert len(t) == 19 and t[0] == pytest.approx(80.0) and t[17] == pytest.approx(0.002) and t[18] == 0.0
    assert all(a > b for a, b in zip(t, t[1:]))
    i = torch.arange(18, dtype=torch.float64)
    reference = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(torch.tensor(t[:-1], dtype=torch.float64), reference)


def test_heun_is_edms_sampler_and_solves_the_gaussian_ode():
    z = torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, s = 0.3, SIGMA_DATA
    calls = []
    denoise = gaussian_denoiser(mu, s)

    def counted(x, sigma):
        calls.append(sigma)
        return denoise(x, sigma)

    ours = heun_sample(counted, z, 18, 0.002, 80.0, 7.0)
    assert len(calls) == 35  # 2N − 1 network evaluations
    torch.testing.assert_close(ours, edm_sampler(lambda x, t: denoise(x, float(t)), z), rtol=1e-12, atol=1e-12)

    # The probability-flow ODE maps σ_max·z to μ + (σ_max·z − μ)·s/√(s² + σ_max²): the data's Gaussian.
    exact = mu + (80 * z - mu) * s / math.sqrt(s**2 + 80**2)
    errors = {n: (heun_sample(denoise, z, n, 0.002, 80.0, 7.0) - exact).abs().max().item() for n in (18, 35, 70)}
    assert errors[70] < 0.01 and errors[18] > errors[35] > errors[70]
    assert errors[18] / errors[70] > (69 / 35) ** 2 * 0.7  # second order in the step count
    solved = heun_sample(denoise, z, 70, 0.002, 80.0, 7.0)
    assert abs(solved.mean() - mu) < 0.03 and abs(solved.std() - s) < 0.02
    # Euler alone (1st order) would be far worse at 18 steps: Heun's correction is doing the work.
    assert errors[18] < 0.2


def test_decode_is_deterministic_images_in_0_1_and_counts_its_evaluations():
    model = make(class_conditional=False, sample_steps=3)
    z = model.prior(2, torch.Generator().manual_seed(0))
    assert z.shape == (2, 1, 16, 16)
    a, b = model.decode(z), model.decode(z.clone())
    assert torch.equal(a, b) and a.shape == (2, 1, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert model.nfe == 5
    model.sample_steps = 18
    assert model.nfe == 35
    # the memory check runs decode on the meta device: no CPU-only op may hide in it
    params, copies, _ = size_estimate(_plain()["model"], _plain()["optimizer"], (1, 28, 28), 10, 4)
    assert params == copies == sum(p.numel() for p in make((1, 28, 28), 10).net.parameters())  # net_ema: one copy


# -- classes and guidance ---------------------------------------------------------------------------

def test_class_conditional_sampling_and_guidance():
    model = make(guidance=0.0)
    assert model.num_classes == 3 and "accuracy" in applicable(model, SHAPES) and model.nfe == 35
    torch.manual_seed(0)
    for _ in range(2):  # move the label map off its init so classes differ visibly
        model.train_step(batch())
    with torch.no_grad():  # a network whose residual branches, output and label map are off their near-zero init
        model.net_ema.map_label.weight.normal_()
        for name, p in model.net_ema.named_parameters():
            if name.endswith(("conv1.weight", "out_conv.weight")):
                p.normal_(0, 0.2)
    model.sample_steps = 1  # one Euler step: x = D(σ_max·z; σ_max), where a random network's output shows
    z, labels = model.class_grid_latents(2, torch.Generator().manual_seed(0))
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and torch.equal(z[0], z[2])
    images = model.decode(z, labels)
    assert 0.05 < images.mean() < 0.95 and (images[0] - images[2]).abs().mean() > 0.01  # same noise, another class
    unguided = model.decode(z, labels)
    model.guidance = 2.0
    assert model.nfe == 2
    guided = model.decode(z, labels)
    assert (guided - unguided).abs().mean() > 0.01
    # w = 0 is the conditional model itself; no label is the unconditional model ∅
    model.guidance = 0.0
    assert torch.equal(model.decode(z, labels), unguided)
    assert model.decode(z, None).shape == images.shape

    unconditional = make(class_conditional=False)
    assert unconditional.num_classes is None and "accuracy" not in applicable(unconditional, SHAPES)
    assert make(num_classes=1).num_classes is None  # one class is no condition


# -- through genlab: resume, sample, explore --------------------------------------------------------

RUN = [*TINY, "model=diffusion", "model.blocks=1", "model.sample_steps=2", "model.lr_rampup_kimg=0.016"]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    from test_resume import assert_same, training_state

    from genlab.commands.train import train

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(compose_jobs("train", [*RUN, "trainer.max_steps=6"], False)[0], straight)
    train(compose_jobs("train", [*RUN, "trainer.max_steps=3"], False)[0], split)
    result = train(compose_jobs("train", [*RUN, "trainer.max_steps=6", f"resume={split}"], False)[0], split)
    assert result["step"] == 6
    a, b = training_state(straight / "checkpoints/last.pt"), training_state(split / "checkpoints/last.pt")
    assert_same(a, b)
    assert a["model"]["images_seen"] == 6 * 8
    assert not torch.equal(a["model"]["net"]["stem.weight"], a["model"]["net_ema"]["stem.weight"])
    for png in (straight / "samples").iterdir():  # grids decoded by the ODE solve, byte for byte
        assert (split / "samples" / png.name).read_bytes() == png.read_bytes(), png.name


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_ddp_processes_train_as_one(tmp_path):
    """hardware=ddp on two gloo CPU processes: each rank draws its rows of the whole batch's noise, σ and
    label-dropout draws, DDP averages the gradients, and the EMA counts the global batch, so the run
    matches one process to float tolerance (no dropout: its masks are drawn per rank)."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    from test_distributed import scalars

    from genlab.commands.train import train
    from genlab.training.checkpoint import load_checkpoint

    small = [o for o in RUN if not o.startswith("hardware")] + ["model.dropout=0", "trainer.max_steps=4"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    launch = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "genlab.cli", "train", "hardware=ddp", "hardware.device=cpu", *small, "hydra.run.dir=ddp"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert launch.returncode == 0, launch.stderr[-3000:]
    train(compose_jobs("train", [*RUN, "model.dropout=0", "trainer.max_steps=4"], False)[0], tmp_path / "single")
    expected, got = scalars(tmp_path / "single"), scalars(tmp_path / "ddp")
    assert got.keys() == expected.keys() and "train/weighted_sq_error" in got
    for tag, points in expected.items():
        assert got[tag] == pytest.approx(points, rel=1e-5, abs=1e-6), tag
    ddp, single = (load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")["model"] for run in ("ddp", "single"))
    assert ddp["images_seen"] == single["images_seen"] == 4 * 8
    for net in ("net", "net_ema"):
        for name, value in single[net].items():
            torch.testing.assert_close(ddp[net][name], value, rtol=1e-4, atol=1e-6, msg=f"{net}.{name}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from genlab.commands.train import train

    base = tmp_path_factory.mktemp("diffusion")
    train(compose_jobs("train", [*RUN, "trainer.max_steps=2"], False)[0], base / "run")
    return base / "run" / "checkpoints" / "last.pt"


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_sample_grid_interpolation_and_latent_through_the_interface(tiny_run, tmp_path):
    from genlab.images import PADDING
    from genlab.commands.sample import sample

    out = sample(str(tiny_run), 6, 0, str(tmp_path / "mid.npz"), mode="interpolate", steps=3, label=1)
    images = np.load(out)["images"]
    assert images.shape == (6, 16, 16, 1) and len({im.tobytes() for im in images}) == 6
    again = np.load(sample(str(tiny_run), 6, 0, str(tmp_path / "again.npz"), mode="interpolate", steps=3, label=1))["images"]
    np.testing.assert_array_equal(images, again)  # deterministic given the latents

    grid = sample(str(tiny_run), 6, 0, str(tmp_path / "grid.png"), mode="grid", steps=8, label=None)
    assert pixels(grid.read_bytes()).std() > 0
    with pytest.raises(Exception, match="mode=traverse needs a model whose latent dimensions are trained to be independent"):
        sample(str(tiny_run), 4, 0, str(tmp_path / "t.png"), mode="traverse", steps=3, label=None)

    latent = torch.randn(256, generator=torch.Generator().manual_seed(3)).tolist()
    one = sample(str(tiny_run), 1, 0, str(tmp_path / "one.png"), mode="grid", steps=8, label=2, latent=latent)
    assert pixels(one.read_bytes())[PADDING:-PADDING, PADDING:-PADDING].shape == (16, 16, 3)


def test_explore_serves_the_pixels_genlab_sample_writes(tiny_run, tmp_path):
    import shlex

    from genlab.images import PADDING
    from genlab.commands.sample import sample

    with explorer_api(tiny_run) as call:
        info = call("api/info")
        assert info["latent_size"] == 256
        latent = torch.randn(256, generator=torch.Generator().manual_seed(1)).mul(1.3).tolist()
        answer = call("api/decode", {"latents": [latent], "labels": [2]})
        words = shlex.split(answer["command"])
        assert words[:2] == ["genlab", "sample"] and "label=2" in words
        keys = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        printed = [float(v) for v in keys["latent"].strip("[]").split(",")]
        written = sample(str(tiny_run), 1, 0, str(tmp_path / "x.png"), mode="grid", steps=8, label=2, latent=printed)
        served = pixels(base64.b64decode(answer["images"][0]))
        np.testing.assert_array_equal(served, pixels(written.read_bytes())[PADDING:-PADDING, PADDING:-PADDING])
        assert served.std() > 0


# -- config checks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("override, words", [
    ("model.width=12", "model.width=12 is not allowed: expected a multiple of 8"),
    ("model.sample_steps=0", "model.sample_steps=0 is not allowed: expected an integer >= 1"),
    ("model.sigma_max=0.001", "model.sigma_max=0.001 is not allowed: expected a number > 0.002"),
    ("model.guidance=-1", "model.guidance=-1 is not allowed: expected a number >= 0"),
])
def test_bad_values_are_one_line(override, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        validate_train(composed(override))


def test_guidance_without_label_dropout_is_refused():
    with pytest.raises(ConfigError, match="guidance needs the unconditional model"):
        validate_train(composed("model.guidance=1", "model.label_dropout=0"))
    validate_train(composed("model.guidance=1"))  # the default dropout trains ∅


def test_the_mnist_preset_composes_and_is_sized_as_its_header_says():
    cfg = compose_jobs("train", ["+experiment=diffusion_mnist"], False)[0]
    validate_train(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    params, _, _ = size_estimate(plain["model"], plain["optimizer"], (1, 28, 28), 10, 2)
    assert 2e6 < params < 6e6 and cfg.model.class_conditional is False and cfg.dataset.name == "mnist"



def test_hardware_compile_compiles_the_nets_sample_and_eval_run(tiny_run, tmp_path, monkeypatch):
    """hardware.compile=true: `genlab sample` compiles every net of the loaded model (torch.compile for
    real: the same 8-bit images as eager, ±1 level), and `genlab eval` hands it the model it evaluates."""
    from genlab.commands.sample import load_model, sample
    from genlab.metrics import evaluation
    from genlab.training import runtime

    model = load_model(tiny_run, "cpu", compile_nets=True)
    assert all(getattr(model, name)._compiled_call_impl is not None for name in ("net", "net_ema"))
    eager = np.load(sample(str(tiny_run), 4, 0, str(tmp_path / "eager.npz"), mode="grid", steps=8, label=1))["images"]
    compiled = np.load(sample(str(tiny_run), 4, 0, str(tmp_path / "compiled.npz"), mode="grid", steps=8, label=1,
                              compile_nets=True))["images"]
    assert np.abs(eager.astype(int) - compiled.astype(int)).max() <= 1

    class Handed(Exception):
        pass

    def handed(model):
        raise Handed(model)

    monkeypatch.setattr(runtime, "compile_nets", handed)
    with pytest.raises(Handed) as error:
        evaluation.evaluate(tiny_run, {"n": 4, "batch_size": 4, "data_root": None}, ["fid"], torch.device("cpu"), True)
    assert error.value.args[0].net_ema is not None
