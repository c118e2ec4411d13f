"""GAN and cGAN: network shapes, the losses against their closed forms, one update, the EMA
generator, determinism and resume, config validation, and one end-to-end cgan run."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, genlab
from genlab.config.validate import ConfigError, validate_train
from genlab.config.compose import compose_jobs
from genlab.data.batches import Batch
from genlab.models import build_model, optim
from genlab.models.gan import Generator, diversity_ratio
from genlab.training.loop import rng_state, set_rng_state

CPU = torch.device("cpu")
torch.set_num_threads(1)  # tiny networks: one thread is fastest, and the machine is shared
SCALARS = {"d_loss", "g_loss", "g_diversity", "d_real", "d_fake", "r1_grad_sq", "d_grad_norm", "g_grad_norm"}
CLASS_SCALARS = {"real_class_acc", "fake_class_acc"}  # cgan with its auxiliary classifier
ARCHS = ["dcgan", "infogan", "infogan_cr"]


def composed(*overrides: str):
    return compose_jobs("train", list(overrides), multirun=False)[0]


@functools.cache
def _plain(name: str) -> dict:
    return OmegaConf.to_container(composed(f"model={name}", "noise_dim=8", "model.width=4"), resolve=True)


def make(name: str, image_shape=(1, 16, 16), num_classes: int = 3, **model):
    """A model built from the YAML defaults of model=<name>, with `model` keys overridden."""
    cfg = copy.deepcopy(_plain(name))
    cfg["model"].update(model)
    return build_model(cfg["model"], cfg["optimizer"], image_shape, num_classes, CPU)


def batch(n=8, image_shape=(1, 16, 16), num_classes=3, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, *image_shape, generator=g), torch.randint(num_classes, (n,), generator=g))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["gan", "cgan"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_network_shapes(name, channels, size, arch):
    torch.manual_seed(0)
    model = make(name, (channels, size, size), arch=arch)
    labels = torch.tensor([0, 2]) if name == "cgan" else None
    images = model.generator(torch.randn(2, model.latent_dim), labels)
    assert images.shape == (2, channels, size, size)
    assert images.abs().max() <= 1
    assert model.discriminator(images, labels)[0].shape == (2,)
    samples = model.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, channels, size, size) and 0 <= samples.min() and samples.max() <= 1


def test_infogan_networks_are_compare_gans():
    """At width 64 on MNIST: compare_gan v1's layers (their parameter counts, BatchNorm ε and decay),
    their sigmoid image, and their D reading images in [0, 1]."""
    torch.manual_seed(0)
    model = make("gan", (1, 28, 28), arch="infogan", width=64, latent_dim=64)
    g, d = model.generator.net, model.discriminator.net
    fc = lambda i, o: i * o + o  # noqa: E731  weights + bias
    bn = lambda c: 2 * c  # noqa: E731  γ, β
    g_expected = fc(64, 1024) + bn(1024) + fc(1024, 128 * 7 * 7) + bn(128 * 7 * 7) + 16 * 128 * 64 + 64 + bn(64) + 16 * 64 + 1
    d_expected = 16 * 64 + 64 + 16 * 64 * 128 + 128 + bn(128) + fc(128 * 7 * 7, 1024) + bn(1024) + fc(1024, 1)
    assert sum(p.numel() for p in g.parameters()) == g_expected
    assert sum(p.numel() for p in d.parameters()) == d_expected
    norms = [m for m in (*g.modules(), *d.modules()) if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 5 and all((m.eps, m.momentum) == (1e-3, 1e-3) for m in norms)
    assert [m.negative_slope for m in g.modules() if isinstance(m, torch.nn.LeakyReLU)] == [0.2] * 3

    model.train(False)
    z = torch.randn(5, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z), torch.sigmoid(g.rest(g.first(z))))
        x = torch.rand(5, 1, 28, 28)
        torch.testing.assert_close(model.discriminator(x * 2 - 1)[0], d.head(d.convs(x)).squeeze(1))


def test_losses_match_closed_forms():
    real, fake = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([0.5, -3.0, 1.2])
    sig = torch.sigmoid
    ns = make("gan", loss="nonsaturating")
    torch.testing.assert_close(ns._d_loss(real, fake), (-torch.log(sig(real)) - torch.log(1 - sig(fake))).mean())
    torch.testing.assert_close(ns._g_loss(fake), (-torch.log(sig(fake))).mean())
    hinge = make("gan", loss="hinge")
    # max(0, 1 − D(x)): 0, 2, 0.7;  max(0, 1 + D(x̃)): 1.5, 0, 2.2
    torch.testing.assert_close(hinge._d_loss(real, fake), torch.tensor((0 + 2 + 0.7 + 1.5 + 0 + 2.2) / 3))
    torch.testing.assert_close(hinge._g_loss(fake), torch.tensor(-(0.5 - 3.0 + 1.2) / 3))


@pytest.mark.parametrize("name,loss,d_steps,arch", [("gan", "nonsaturating", 1, "dcgan"), ("cgan", "hinge", 2, "dcgan"),
                                                    ("cgan", "nonsaturating", 1, "infogan"),
                                                    ("cgan", "nonsaturating", 1, "infogan_cr")])
def test_one_step_updates_both_networks(name, loss, d_steps, arch):
    torch.manual_seed(0)
    model = make(name, loss=loss, d_steps=d_steps, arch=arch)
    before = copy.deepcopy(model.state_dict())
    metrics = model.train_step(batch())
    after = model.state_dict()
    assert set(metrics) == (SCALARS | CLASS_SCALARS if name == "cgan" else SCALARS)
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in metrics.values())
    if loss == "nonsaturating":
        assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1  # probabilities
    for net in ("generator", "discriminator"):
        changed = [k for k, v in after[net].items() if v.is_floating_point() and not torch.equal(v, before[net][k])]
        assert changed, f"{net} did not change"
        assert all(torch.isfinite(v).all() for v in after[net].values() if v.is_floating_point())
    if name == "cgan":  # the label embedding and the projection are trained too
        assert not torch.equal(after["generator"]["embed.weight"], before["generator"]["embed.weight"])
        for layer in ("project", "classifier"):  # under spectral norm the trained weight is `….original`
            key = f"{layer}.parametrizations.weight.original" if arch == "infogan_cr" else f"{layer}.weight"
            assert not torch.equal(after["discriminator"][key], before["discriminator"][key]), key


def test_r1_is_the_squared_input_gradient_of_d_on_real_images():
    torch.manual_seed(0)
    model = make("cgan", r1_gamma=10.0)
    d_before, data = copy.deepcopy(model.discriminator), batch()
    x = (data.images * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(d_before(x, data.labels)[0].sum(), x)
    metrics = model.train_step(data)
    torch.testing.assert_close(metrics["r1_grad_sq"], grad.pow(2).flatten(1).sum(1).mean())
    assert make("gan", r1_gamma=0.0).train_step(data)["r1_grad_sq"] == 0


def test_diversity_ratio_matches_its_closed_form():
    images = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, -1.0], [2.0, 0.0], [9.0, 9.0]])  # the 5th has no pair
    z = torch.tensor([[1.0], [0.0], [3.0], [-2.0], [7.0]])
    # pairs (0, 2), (1, 3): mean |x̃ gaps| = (1 + 2 + 0 + 2) / 4, mean |z gaps| = (2 + 2) / 2
    torch.testing.assert_close(diversity_ratio(images, z), torch.tensor(1.25 / 2.0))


def test_mode_seeking_pairs_labels_and_changes_only_the_generator_update(monkeypatch):
    forward, seen = Generator.forward, []
    monkeypatch.setattr(Generator, "forward", lambda self, z, labels=None: seen.append(labels) or forward(self, z, labels))

    data, updates = batch(n=7), {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = make("cgan", mode_seeking=weight)
        seen.clear()
        metrics = model.train_step(data)
        updates[weight] = model.state_dict()
    g_labels = seen[-1]  # the generator's update: pairs (i, 3 + i) share a label
    torch.testing.assert_close(g_labels[:3], g_labels[3:6])
    assert torch.equal(g_labels[:3], data.labels[:3])
    assert metrics["g_diversity"] > 0
    for key, value in updates[0.0]["discriminator"].items():  # D steps before G: the same
        torch.testing.assert_close(updates[1.0]["discriminator"][key], value, rtol=0, atol=0)
    assert not torch.equal(updates[1.0]["generator"]["net.head.weight"], updates[0.0]["generator"]["net.head.weight"])


def test_auxiliary_classifier_loss_is_cross_entropy_and_off_at_zero():
    model = make("cgan")
    logits, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 1])
    loss, accuracy = model._classified(logits, labels)
    # −log softmax: e²/(e² + 2) for the first row, e¹/(1 + e + e³) for the second; argmax right once
    expected = -(math.log(math.e**2 / (math.e**2 + 2)) + math.log(math.e / (1 + math.e + math.e**3))) / 2
    torch.testing.assert_close(loss, torch.tensor(expected))
    assert accuracy == 0.5

    updates = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = make("cgan", class_loss=weight)
        assert (model.discriminator.classifier is None) == (weight == 0)
        metrics = model.train_step(batch())
        assert set(metrics) == (SCALARS | CLASS_SCALARS if weight else SCALARS)
        updates[weight] = model.state_dict()
    # the classifier's cross-entropy trains D's shared convolutions too
    conv = "net.convs.0.weight"
    assert not torch.equal(updates[1.0]["discriminator"][conv], updates[0.0]["discriminator"][conv])


@pytest.mark.parametrize("arch", ARCHS)
def test_ema_follows_its_formula_and_is_what_sample_uses(arch):
    torch.manual_seed(0)
    model = make("gan", ema_decay=0.999, arch=arch)
    start = {k: v.clone() for k, v in model.generator.state_dict().items()}
    model.train_step(batch())
    # First update: β_0 = min(0.999, 1/10) = 0.1, so θ_ema = 0.1·θ_0 + 0.9·θ_1 (running stats too).
    for key, ema in model.generator_ema.state_dict().items():
        raw = model.generator.state_dict()[key]
        expected = raw if not raw.is_floating_point() else 0.1 * start[key] + 0.9 * raw
        torch.testing.assert_close(ema, expected)
    for _ in range(2):
        model.train_step(batch())
    raw, ema = model.generator.state_dict(), model.generator_ema.state_dict()
    assert all(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())

    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(1))
    samples = model.sample(6, torch.Generator().manual_seed(1))
    model.train(False)
    with torch.no_grad():
        torch.testing.assert_close(samples, (model.generator_ema(z) + 1) / 2)
        # not the raw G's images (infogan's tiny test networks draw grey 0.5 ± 10⁻⁴ at first: a tight bound)
        assert not torch.allclose(samples, (model.generator(z) + 1) / 2, rtol=0, atol=1e-6)


def test_class_grid_row_k_is_class_k():
    torch.manual_seed(0)
    model = make("cgan")
    model.train_step(batch())
    latents, labels = model.class_grid_latents(4, torch.Generator().manual_seed(3))
    images = model.decode(latents, labels)
    assert images.shape == (3 * 4, 1, 16, 16)
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(3))
    rows = images.view(3, 4, 1, 16, 16)
    for k in range(3):  # row k: class k with the same noise z_0..z_3 in every row
        torch.testing.assert_close(rows[k], model.decode(z, torch.full((4,), k)))
    assert not torch.allclose(rows[0], rows[1])
    grids = model.image_grids(torch.zeros(7, 1, 16, 16), torch.Generator().manual_seed(0))
    assert grids["samples"][0].shape[0] == 7 and grids["classes"][1] == 7 // 3


def _train(model, first: int, last: int):
    """Steps first … last − 1, step i on real batch i."""
    return [model.train_step(batch(seed=i)) for i in range(first, last)]


@pytest.mark.parametrize("arch", ARCHS)
def test_training_is_deterministic_and_resumes_exactly(arch):
    torch.manual_seed(0)
    first = make("cgan", d_steps=2, arch=arch)
    _train(first, 0, 2)
    saved_state, saved_rng = copy.deepcopy(first.state_dict()), rng_state()
    continued = _train(first, 2, 4)

    resumed = make("cgan", d_steps=2, arch=arch)
    resumed.load_state_dict(saved_state)
    set_rng_state(saved_rng)
    resumed_metrics = _train(resumed, 2, 4)
    torch.manual_seed(0)
    again = make("cgan", d_steps=2, arch=arch)
    again_metrics = _train(again, 0, 4)[2:]
    for model, metrics in ((resumed, resumed_metrics), (again, again_metrics)):
        for a, b in zip(continued, metrics):
            assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}
        torch.testing.assert_close(model.generator_ema.state_dict(), first.generator_ema.state_dict(), rtol=0, atol=0)


def test_state_dict_is_plain_data(tmp_path):
    model = make("cgan")
    model.train_step(batch())
    torch.save(model.state_dict(), tmp_path / "m.pt")
    loaded = make("cgan")
    loaded.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert loaded.ema_updates == 1
    g = torch.Generator()
    torch.testing.assert_close(loaded.sample(4, g.manual_seed(0)), model.sample(4, g.manual_seed(0)))


def test_noise_dim_defaults_per_model_and_the_command_line_wins():
    assert composed("model=vae").model.latent_dim == 10
    assert composed("model=gan").noise_dim == composed("model=cgan").model.latent_dim == 64
    assert composed("model=cgan", "noise_dim=16").model.latent_dim == 16
    gan = composed("model=gan")
    assert (gan.optimizer.lr, list(gan.optimizer.betas)) == (2.0e-4, [0.5, 0.999])


@pytest.mark.parametrize("override,message", [
    ("model.loss=wasserstein", "model.loss='wasserstein' is not allowed: choose one of nonsaturating, hinge"),
    ("model.d_steps=0", "model.d_steps=0 is not allowed: expected an integer >= 1"),
    ("model.r1_gamma=-1", "model.r1_gamma=-1 is not allowed: expected a number >= 0"),
    ("model.mode_seeking=-0.5", "model.mode_seeking=-0.5 is not allowed: expected a number >= 0"),
    ("model.class_loss=-1", "model.class_loss=-1 is not allowed: expected a number >= 0"),
    ("trainer.batch_size=1", "trainer.batch_size=1 is not allowed: expected an integer >= 2"),
    ("model.ema_decay=1", "model.ema_decay=1 is not allowed: expected a number >= 0 and < 1"),
    ("model.ema_decay=-0.5", "model.ema_decay=-0.5 is not allowed"),
    ("model.embed_dim=0", "model.embed_dim=0 is not allowed: expected an integer >= 1"),
    ("model.arch=resnet", "model.arch='resnet' is not allowed: choose one of dcgan, infogan, infogan_cr"),
    ("model.g_steps=0", "model.g_steps=0 is not allowed: expected an integer >= 1"),
    ("model.d_lr_scale=0", "model.d_lr_scale=0 is not allowed: expected a number > 0"),
    ("model.d_batchnorm=sometimes", "model.d_batchnorm='sometimes' is not allowed: choose one of None, True, False"),
    ("model.prior=laplace", "model.prior='laplace' is not allowed: choose one of normal, uniform"),
    ("model.info_codes=-1", "model.info_codes=-1 is not allowed: expected an integer >= 0"),
    ("noise_dim=8 model.info_codes=9", "model.info_codes=9 is more than z's 8 dimensions: lower it, or raise noise_dim"),
    ("model.info_weight=0.05", "model.info_weight=0.05 needs model.info_codes > 0"),
    ("model.info_codes=3", "model.info_codes=3 does nothing with model.info_weight=0: set model.info_weight"),
    ("model.info_codes=2 model.info_weight=nan", "model.info_weight=nan is not allowed: expected a finite number >= 0"),
    ("model.arch=infogan_cr model.d_batchnorm=true",
     "model.d_batchnorm=true is not allowed with model.arch=infogan_cr: its discriminator has spectral norm"),
])
def test_bad_gan_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as error:
        validate_train(composed("model=cgan", *override.split()))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("arch", ["infogan", "infogan_cr"])
def test_infogan_follows_the_fp16_rules_and_trains_under_fp16(arch):
    with pytest.raises(ConfigError, match="R1's double backward through BatchNorm overflows fp16"):
        validate_train(composed("model=gan", f"model.arch={arch}", "hardware.precision=fp16"))
    torch.manual_seed(0)
    info = {"prior": "uniform", "info_codes": 2, "info_weight": 0.05} if arch == "infogan_cr" else {}  # gan_shapes' Q head
    model = make("cgan", arch=arch, r1_gamma=0.0, **info)
    skipped = []
    for i in range(12):  # loss scaling skips the first updates while S falls from 2^16 (~10 here)
        before = copy.deepcopy(model.state_dict())
        with torch.autocast("cpu", dtype=torch.float16):
            metrics = model.train_step(batch(seed=i))
        assert torch.isfinite(metrics["d_loss"]) and torch.isfinite(metrics["g_loss"])
        skipped.append(bool(optim.skipped_update(model.optimizers())))
    assert skipped[0] and not skipped[-1]
    assert all(torch.isfinite(v).all() for v in metrics.values())
    for net in ("generator", "discriminator"):  # the last, unskipped update moved both networks
        assert any(not torch.equal(v, before[net][k]) for k, v in model.state_dict()[net].items() if v.is_floating_point())


@pytest.mark.parametrize("arch", ["dcgan", "infogan"])
def test_d_batchnorm_false_removes_only_the_discriminators_batchnorm(arch):
    def norms(net):
        return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())

    own, plain = make("cgan", arch=arch, d_batchnorm=None), make("cgan", arch=arch, d_batchnorm=False)
    assert norms(own.discriminator) > 0 and norms(plain.discriminator) == 0
    assert norms(plain.generator) == norms(own.generator) > 0
    torch.manual_seed(0)
    metrics = plain.train_step(batch())
    assert all(torch.isfinite(v).all() for v in metrics.values())


def test_checkpoints_before_model_arch_ran_dcgan():
    config = {"model": {"_target_": "genlab.models.gan.CGAN", "name": "cgan", "class_loss": 5.0}}
    from genlab.models import migrate_config

    migrate_config(config)
    assert config["model"]["arch"] == "dcgan"
    assert (config["model"]["g_steps"], config["model"]["d_lr_scale"]) == (1, 1.0)  # one G update, one lr
    assert config["model"]["d_batchnorm"] is None  # the arch's own D


@pytest.mark.parametrize("arch", ["infogan", "infogan_cr"])
def test_infogan_cgan_samples_from_its_checkpoint_in_every_mode(tmp_path, arch):
    from genlab.commands.sample import load_model, render
    from genlab.commands.train import train

    cfg = compose_jobs("train", [*TINY, "model=cgan", f"model.arch={arch}", "noise_dim=8"], False)[0]
    model = load_model(train(cfg, tmp_path / "run")["ckpt"])  # rebuilt from the checkpoint alone
    seeded = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    grid, per_row = render(model, "grid", 6, 3, None, seeded())  # the class grid: 3 classes × 2
    assert grid.shape == (6, 1, 16, 16) and per_row == 2 and 0 <= grid.min() and grid.max() <= 1
    path, _ = render(model, "interpolate", 6, 3, 1, seeded())
    ends, _ = render(model, "grid", 4, 3, 1, seeded())  # rows run from sample i to sample 2 + i
    torch.testing.assert_close(path.view(2, 3, 1, 16, 16)[:, 0], ends[:2])
    torch.testing.assert_close(path.view(2, 3, 1, 16, 16)[:, -1], ends[2:])
    directions, names = model.directions(5, seeded())
    assert directions.shape == (5, 8) and len(names) == 5 and names[0].startswith("PC0 ")
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(5))


def test_cgan_needs_two_classes(monkeypatch):
    import genlab.data

    validate_train(composed("model=cgan"))  # shapes has 3
    monkeypatch.setattr(genlab.data, "num_classes", lambda cfg: 1)
    with pytest.raises(ConfigError, match=r"^model=cgan needs a dataset with at least 2 classes, but dataset=shapes has 1: use model=gan$"):
        validate_train(composed("model=cgan"))
    validate_train(composed("model=gan"))


def test_cgan_end_to_end(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = genlab("train", "model=cgan", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert {p.name for p in (run / "samples").iterdir()} == {
        f"step_{s:07d}_{g}.png" for s in (2, 4) for g in ("samples", "classes")}
    events = EventAccumulator(str(run)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"train/{name}" for name in SCALARS} | {"lr/generator", "lr/discriminator", "perf/img_per_s"} <= tags
    assert {"images/samples", "images/classes"} <= set(events.Tags()["images"])
    assert all(math.isfinite(e.value) for tag in tags for e in events.Scalars(tag))
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"]["ema_updates"] == 4 and state["config"]["model"]["latent_dim"] == 64
