"""genlab sample's modes: the class grid, label=K, slerp interpolation, VAE traversal, and the
one-line errors for a mode that does not fit the checkpoint's model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, genlab
from genlab.config.validate import ConfigError
from genlab.config.compose import compose_jobs
from genlab.errors import UserError
from genlab.images import to_uint8
from genlab.commands.sample import Rate, load_model, render, sample, slerp
from genlab.commands.train import train

torch.set_num_threads(1)  # tiny networks: one thread is fastest, and the machine is shared
SIZE = 16  # TINY's image size


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, str]:
    """name → checkpoint of a tiny in-process run of vae (noise_dim 3), gan and cgan."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for name in ("vae", "gan", "cgan"):
        cfg = compose_jobs("train", [*TINY, f"model={name}", "noise_dim=3" if name == "vae" else "noise_dim=8"], False)[0]
        paths[name] = str(train(cfg, root / name)["ckpt"])
    return paths


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_slerp_follows_the_great_circle():
    e1, e2 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]]) / 2
    t = torch.linspace(0, 1, 5)[:, None]
    expected = torch.cos(t * math.pi / 2) * e1 + torch.sin(t * math.pi / 2) * e2  # closed form, Ω = π/2
    torch.testing.assert_close(slerp(e1, e2, t), expected)
    a, b = torch.randn(2, 4, 1, 7, generator=seeded()).unbind(0)
    path = slerp(a, b, t)
    assert torch.equal(path[:, 0], a[:, 0]) and torch.equal(path[:, -1], b[:, 0])  # ends exactly
    torch.testing.assert_close(slerp(a, a, t), a.expand(4, 5, 7))  # parallel: no division by sin 0


@pytest.mark.parametrize("name,label", [("vae", None), ("gan", None), ("cgan", 1)])
def test_interpolation_ends_are_the_grid_samples(ckpts, name, label):
    model = load_model(ckpts[name])
    rows, steps = 3, 5
    path, per_row = render(model, "interpolate", rows * steps + 2, steps, label, seeded(4))
    grid, _ = render(model, "grid", 2 * rows, steps, label, seeded(4))
    assert per_row == steps and path.shape == (rows * steps, 1, SIZE, SIZE)
    path = path.view(rows, steps, 1, SIZE, SIZE)
    # Row i runs from sample i to sample rows + i of `mode=grid n=2·rows` with the same seed.
    torch.testing.assert_close(path[:, 0], grid[:rows])
    torch.testing.assert_close(path[:, -1], grid[rows:])
    assert not torch.allclose(path[:, 2], path[:, 0])


def test_traversal_rows_differ_only_along_their_dimension(ckpts):
    vae = load_model(ckpts["vae"])
    z = vae.traversal(7, seeded(2)).view(3, 7, 3)
    centre = torch.randn(3, generator=seeded(2))
    for i in range(3):
        torch.testing.assert_close(z[i, :, i], torch.linspace(-3, 3, 7))
        others = [j for j in range(3) if j != i]
        torch.testing.assert_close(z[i][:, others], centre[others].expand(7, 2))
    images, per_row = render(vae, "traverse", 64, 7, None, seeded(2))
    assert per_row == 7
    torch.testing.assert_close(images, vae.decode(z.flatten(0, 1)))


def test_cgan_grid_defaults_to_the_class_grid_and_label_picks_a_class(ckpts):
    cgan = load_model(ckpts["cgan"])
    images, per_row = render(cgan, "grid", 10, 8, None, seeded(1))
    expected = cgan.decode(*cgan.class_grid_latents(3, seeded(1)))  # 10 // 3 images per class row
    assert per_row == 3
    torch.testing.assert_close(images, expected)
    labelled, _ = render(cgan, "grid", 5, 8, 2, seeded(1))
    torch.testing.assert_close(labelled, cgan.decode(cgan.prior(5, seeded(1)), torch.full((5,), 2)))


@pytest.mark.parametrize("name,options,rows,per_row,file", [
    ("vae", {"mode": "traverse", "steps": 4}, 3, 4, "traverse_steps4_seed0.png"),
    ("vae", {"mode": "interpolate", "n": 8, "steps": 4}, 2, 4, "interpolate_n8_steps4_seed0.png"),
    ("gan", {"mode": "grid", "n": 9}, 3, 3, "sample_n9_seed0.png"),
    ("gan", {"mode": "interpolate", "n": 12, "steps": 6}, 2, 6, "interpolate_n12_steps6_seed0.png"),
    ("cgan", {"mode": "grid", "n": 8}, 3, 2, "sample_n8_seed0.png"),
    ("cgan", {"mode": "grid", "n": 4, "label": 0}, 2, 2, "sample_label0_n4_seed0.png"),
    ("cgan", {"mode": "interpolate", "n": 6, "steps": 3, "label": 2}, 2, 3, "interpolate_label2_n6_steps3_seed0.png"),
])
def test_each_fitting_mode_writes_its_grid(ckpts, name, options, rows, per_row, file):
    options = {"n": 64, "steps": 8, "label": None, **options}
    n = options.pop("n")
    path = sample(ckpts[name], n, 0, None, **options)
    assert path.name == file and path.parent.name == "samples"
    assert Image.open(path).size == (per_row * (SIZE + 2) + 2, rows * (SIZE + 2) + 2)


@pytest.mark.parametrize("name,options,message", [
    ("gan", {"mode": "traverse"}, "mode=traverse needs a model whose latent dimensions are trained to be independent, "
                                  "but this checkpoint holds a GAN: use mode=grid or mode=interpolate"),
    ("cgan", {"mode": "traverse"}, "mode=traverse needs a model whose latent dimensions are trained to be independent"),
    ("gan", {"label": 0}, "label=0 needs a class-conditional model, but this checkpoint holds a GAN, which has no classes"),
    ("vae", {"label": 1, "mode": "interpolate"}, "label=1 needs a class-conditional model, but this checkpoint holds a VAE, which has no classes"),
    ("cgan", {"label": 3}, "label=3 is out of range: this CGAN has 3 classes, choose label=0..2"),
    ("gan", {"mode": "interpolate", "n": 4}, "n=4 is too small for mode=interpolate with steps=8: it makes n // steps rows, so pass n>=8"),
])
def test_a_mode_that_does_not_fit_is_a_one_line_error(ckpts, name, options, message):
    options = {"mode": "grid", "steps": 8, "label": None, "n": 64, **options}
    n = options.pop("n")
    with pytest.raises(UserError) as error:
        sample(ckpts[name], n, 0, None, **options)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("options,message", [
    ({"mode": "walk"}, "mode='walk' is not allowed: choose one of grid, interpolate, traverse"),
    ({"steps": 1}, "steps=1 is not allowed: expected an integer >= 2"),
    ({"label": -1}, "label=-1 is not allowed: expected an integer >= 0"),
    ({"label": "heart"}, "label='heart' is not allowed: expected an integer >= 0"),
])
def test_bad_sample_options_are_config_errors(ckpts, options, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        sample(ckpts["cgan"], 8, 0, None, **{"mode": "grid", "steps": 8, "label": None, **options})


def test_cli_bad_mode_exits_with_one_line_and_writes_nothing(ckpts, tmp_path):
    out = tmp_path / "grid.png"
    result = genlab("sample", f"ckpt={ckpts['gan']}", "mode=traverse", f"out={out}", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "genlab sample: error: mode=traverse needs a model whose latent dimensions are trained to be independent, "
        "but this checkpoint holds a GAN: use mode=grid or mode=interpolate"]
    assert list(tmp_path.iterdir()) == []


def test_many_samples_go_to_an_npz_generated_in_batches(ckpts, capfd):
    path = sample(ckpts["gan"], 1500, 0, None, mode="grid", steps=8, label=None, batch_size=400)
    assert path.name == "sample_n1500_seed0.npz"
    assert "generated 1,500 images in" in capfd.readouterr().err
    gan = load_model(ckpts["gan"])
    expected, _ = render(gan, "grid", 1500, 8, None, seeded(0))  # one pass: the same images
    with np.load(path) as archive:
        assert archive["images"].shape == (1500, SIZE, SIZE, 1) and archive["images"].dtype == np.uint8
        assert np.array_equal(archive["images"], to_uint8(expected).permute(0, 2, 3, 1).numpy())


def test_the_rate_line_keeps_slow_rates_readable():
    """A diffusion model on the CPU draws under 1 image a second: two significant digits, not "0 img/s"."""
    slow, fast = Rate(iter([torch.zeros(16)])), Rate(iter([torch.zeros(1500)]))
    list(slow), list(fast)
    slow.seconds, fast.seconds = 67.2, 1.0
    assert slow.line(None) == "generated 16 images in 67.20 s: 0.24 img/s (batches of 16)"
    assert fast.line(400) == "generated 1,500 images in 1.00 s: 1,500 img/s (batches of 400)"


def test_a_grid_of_more_than_1024_images_is_refused(ckpts, tmp_path):
    with pytest.raises(ConfigError, match=r"^out=.*big.png with n=1025 is not allowed: a PNG grid holds at most 1024 "
                                          r"images; write all 1025 with out=<name>.npz, or pass n<=1024$"):
        sample(ckpts["vae"], 1025, 0, str(tmp_path / "big.png"), mode="grid", steps=8, label=None)
    assert list(tmp_path.iterdir()) == []
