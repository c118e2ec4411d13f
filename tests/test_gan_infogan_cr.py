"""model.arch=infogan_cr (InfoGAN-CR's dSprites networks), g_steps, d_lr_scale and the gan_shapes /
cgan_shapes presets. The behaviour shared with the other archs (shapes, one update, EMA, exact
resume, fp16, sampling modes, explorer directions) is parametrized over every arch in test_gan.py,
test_resume.py and test_explore.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY, explorer_api, genlab
from test_gan import batch, composed, make

from genlab.config.validate import validate_train
from genlab.models.gan_nets import InfoGANCRDiscriminator, InfoGANCRGenerator

torch.set_num_threads(1)


def _normalised(module: torch.nn.Module) -> bool:
    return torch.nn.utils.parametrize.is_parametrized(module, "weight")


def test_infogan_cr_networks_are_theirs():
    """At 64 px and width 32: their layers (parameter counts of network.py's Decoder and
    InfoGANDiscriminator trunk + x head), BatchNorm after the activation in G, none in D, spectral
    norm on every D layer, their sigmoid image and D reading [0, 1]."""
    torch.manual_seed(0)
    g, d = InfoGANCRGenerator((1, 64, 64), 32, 10), InfoGANCRDiscriminator((1, 64, 64), 32)
    fc = lambda i, o: i * o + o  # noqa: E731
    deconv = lambda i, o: 16 * i * o + o  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    g_expected = (fc(10, 128) + bn(128) + fc(128, 4 * 4 * 64) + bn(4 * 4 * 64) + deconv(64, 64) + bn(64)
                  + deconv(64, 32) + bn(32) + deconv(32, 32) + bn(32) + deconv(32, 1))
    d_expected = deconv(1, 32) + deconv(32, 32) + deconv(32, 64) + deconv(64, 64) + fc(4 * 4 * 64, 128) + fc(128, 1)
    assert sum(p.numel() for p in g.parameters()) == g_expected
    assert sum(p.numel() for p in d.parameters()) == d_expected
    kinds = [type(m).__name__ for m in g.rest]
    assert kinds[4:7] == ["ConvTranspose2d", "LeakyReLU", "BatchNorm2d"]  # activation, then BatchNorm
    assert [type(m).__name__ for m in g.first] == ["Linear", "ReLU", "BatchNorm1d"]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 6 and all(_normalised(m) for m in layers)
    assert [m.out_channels for m in layers[:4]] == [32, 32, 64, 64]

    d.train()
    for _ in range(30):  # power iterations: each normalised weight's largest singular value → 1
        d.features(torch.rand(2, 1, 64, 64) * 2 - 1)
    d.eval()
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 0.05, sigma

    g.eval()
    z = torch.randn(5, 10)
    with torch.no_grad():
        image = g(z)
        torch.testing.assert_close((image + 1) / 2, torch.sigmoid(g.rest(g.first(z))))
        x = torch.rand(3, 1, 64, 64)
        torch.testing.assert_close(d.features(x * 2 - 1), d.convs(x))


def test_cgan_projection_and_classifier_are_normalised_only_on_infogan_cr():
    cr, plain = make("cgan", arch="infogan_cr"), make("cgan", arch="infogan")
    for layer in ("project", "classifier"):
        assert _normalised(getattr(cr.discriminator, layer))
        assert not _normalised(getattr(plain.discriminator, layer))


def test_info_head_is_infogans_gaussian_bound_and_learns_the_codes():
    """L_I = −log N(c; Q(φ(x̃)), I) − (k/2)·log 2π (torch.distributions as the reference), Q spectrally
    normalised with infogan_cr, and D and G trained on it: L_I falls from ½·k/3 (Q = 0, c ~ U(−1, 1))."""
    torch.manual_seed(0)
    model = make("gan", arch="infogan_cr", prior="uniform", info_codes=3, info_weight=1.0, lr=0.01)
    assert [_normalised(m) for m in model.discriminator.q if isinstance(m, torch.nn.Linear)] == [True, True]
    assert not _normalised(make("gan", arch="infogan", info_codes=3, info_weight=1.0).discriminator.q[0])
    codes, z = torch.randn(6, 3), torch.rand(6, 8) * 2 - 1
    reference = -torch.distributions.Normal(codes, 1.0).log_prob(z[:, :3]).sum(1).mean() - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(model._info_loss(codes, z), reference)
    losses = [float(model.train_step(batch(16, seed=step))["info_loss"]) for step in range(120)]
    assert abs(sum(losses[:15]) / 15 - 0.5) < 0.1, losses[:15]
    assert sum(losses[-15:]) / 15 < 0.4, losses[-15:]  # 0.31 on the machine that wrote this


def test_uniform_prior_is_uniform_on_both_paths():
    """prior (sampling) and the training noise: U(−1, 1) by the Kolmogorov–Smirnov distance (< 0.01 at n = 10⁵)."""
    model = make("gan", prior="uniform")
    drawn = model.prior(100_000 // model.latent_dim, torch.Generator().manual_seed(0)).flatten()
    torch.manual_seed(0)
    trained = model._noise(batch(100_000 // model.latent_dim)).flatten()
    for z in (drawn, trained):
        assert z.abs().max() < 1
        ecdf = torch.arange(1, len(z) + 1) / len(z)
        assert (ecdf - (z.sort().values + 1) / 2).abs().max() < 0.01


@pytest.mark.parametrize("size,first", [(28, 7), (32, 4), (16, 4)])
def test_infogan_cr_other_sizes_start_from_the_smallest_feature_map(size, first):
    g = InfoGANCRGenerator((3, size, size), 4, 6)
    unflatten = next(m for m in g.rest if isinstance(m, torch.nn.Unflatten))
    assert unflatten.unflattened_size[1:] == (first, first)
    assert g(torch.randn(2, 6)).shape == (2, 3, size, size)


def test_g_steps_updates_g_that_often_and_d_lr_scale_scales_only_d():
    torch.manual_seed(0)
    one = make("cgan", arch="infogan_cr", g_steps=1)
    torch.manual_seed(0)
    two = make("cgan", arch="infogan_cr", g_steps=2, d_lr_scale=2.0)
    lr = one.g_optimizer.param_groups[0]["lr"]
    assert [two.g_optimizer.param_groups[0]["lr"], two.d_optimizer.param_groups[0]["lr"]] == [lr, 2 * lr]
    assert one.d_optimizer.param_groups[0]["lr"] == lr
    metrics = two.train_step(batch())
    assert two.ema_updates == 2 and two.g_optimizer.state_dict()["state"][0]["step"] == 2
    assert two.d_optimizer.state_dict()["state"][0]["step"] == 1
    assert all(v.dim() == 0 and torch.isfinite(v) for v in metrics.values())
    one.train_step(batch())
    # Adam's first update moves each weight by about lr: D's twice as far with d_lr_scale = 2
    torch.manual_seed(0)  # the weights both started from
    start = make("cgan", arch="infogan_cr").discriminator.state_dict()
    key = "net.head.bias"
    step_one = (one.discriminator.state_dict()[key] - start[key]).abs().max()
    step_two = (two.discriminator.state_dict()[key] - start[key]).abs().max()
    torch.testing.assert_close(step_two / step_one, torch.tensor(2.0), rtol=1e-3, atol=0)


@pytest.mark.parametrize("name", ["gan_shapes", "cgan_shapes"])
def test_shapes_presets_are_infogan_crs_recipe(name):
    cfg = composed(f"+experiment={name}")
    validate_train(cfg)
    m = cfg.model
    assert (cfg.dataset.name, cfg.dataset.image_size, cfg.trainer.batch_size) == ("shapes", 64, 64)
    assert (m.arch, m.width, m.latent_dim, m.loss, m.d_steps, m.g_steps) == ("infogan_cr", 32, 10, "nonsaturating", 1, 2)
    assert (cfg.optimizer.lr, cfg.optimizer.lr * m.d_lr_scale, list(cfg.optimizer.betas)) == (1e-3, 2e-3, [0.5, 0.999])
    assert (m.r1_gamma, m.ema_decay) == (0, 0)
    assert cfg.trainer.max_steps == 28 * (737280 // 64)
    assert m.name == name.split("_")[0]
    theirs = ("uniform", 5, 0.05) if name == "gan_shapes" else ("normal", 0, 0)  # cgan_shapes: see its header
    assert (m.prior, m.info_codes, m.info_weight) == theirs


def test_cgan_shapes_trains_resumes_and_evaluates_with_the_shapes_ruler(tmp_path):
    """The GPU command's path at tiny sizes: train with keep_last, stop, resume, eval metrics=[shapes]."""
    tiny = [o for o in TINY if not o.startswith("trainer.max_steps")]
    first = genlab("train", "+experiment=cgan_shapes", *tiny, "trainer.max_steps=2", "trainer.keep_last=5",
                   "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = genlab("train", "resume=run", *tiny, "trainer.max_steps=4", "trainer.keep_last=5", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert checkpoints == ["step_0000002.pt", "step_0000004.pt"]
    result = genlab("eval", "ckpt=run/checkpoints/step_0000002.pt", "metrics=[shapes]", "n=12", "hardware=cpu",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "checkpoints" / "step_0000002.eval.json").read_text())
    shapes = report["metrics"]["shapes"] if "metrics" in report else report["shapes"]
    assert set(shapes["own_shape"]) == {"square", "ellipse", "heart"} and shapes["n"] == 12
    assert all(0 <= v <= 1 for v in shapes["own_shape"].values())


def test_explore_serves_an_infogan_cr_cgan_through_the_model_interface(tmp_path):
    """Sliders (GANSpace directions of G's first layer), a moved slider changes the image, and the
    page's command line draws the same pixels with genlab sample."""
    import base64
    import io
    import shlex
    import numpy as np
    from PIL import Image

    from genlab.config.compose import compose_jobs
    from genlab.images import PADDING
    from genlab.commands.train import train

    # a large learning rate: two updates from the initial weights (N(0, 0.02²)) make z visible in 8-bit pixels
    overrides = [*TINY, "model=cgan", "model.arch=infogan_cr", "noise_dim=8", "trainer.max_steps=2", "model.lr=0.05",
                 "model.prior=uniform", "model.info_codes=2", "model.info_weight=0.05"]  # with gan_shapes' Q head
    train(compose_jobs("train", overrides, False)[0], tmp_path / "run", overrides)
    with explorer_api(tmp_path / "run" / "checkpoints" / "last.pt") as call:
        info = call("api/info")
        first = info["directions"][0]
        assert first["name"].startswith("PC0 ") and len(first["vector"]) == info["latent_size"] == 8
        base = torch.randn(8, generator=torch.Generator().manual_seed(1))
        moved = base + 3 * torch.tensor(first["vector"])
        answers = [call("api/decode", {"latents": [z.tolist()], "labels": [2]}) for z in (base, moved)]
        images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(a["images"][0]))).convert("L")) for a in answers]
        assert images[0].shape == (16, 16) and not np.array_equal(images[0], images[1])
        words = shlex.split(answers[1]["command"])
        result = genlab(*words[1:], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        written = np.asarray(Image.open(tmp_path / words[-1].split("=", 1)[1]).convert("L"))
        np.testing.assert_array_equal(written[PADDING:-PADDING, PADDING:-PADDING], images[1])
