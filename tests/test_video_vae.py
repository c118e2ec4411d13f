"""model=video_vae (genlab/models/video_vae.py) on dataset=moving_mnist: it trains, resumes bit for
bit, and `genlab sample` writes an animated GIF and a film strip; clips and still images do not mix.
Its metrics and conditional prediction: tests/test_video_metrics.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import genlab, needs_mnist
from PIL import Image
from test_resume import assert_same, logged, training_state

from genlab.config.checks import ConfigError
from genlab.config.compose import compose_jobs
from genlab.config.validate import validate_train
from genlab.data.batches import Batch
from genlab.images import PADDING
from genlab.models.video_vae import VideoVAE
from genlab.commands.train import train

FRAMES, SIZE = 6, 16
MODEL = {"static_dim": 4, "dynamic_dim": 2, "hidden": 16, "width": 8, "beta": 1.0, "lr": 1e-3, "betas": [0.9, 0.999],
         "name": "video_vae", "decoder": "conv", "slots": 2}
DECODERS = ["conv", "sprites"]
OPTIMIZER = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}


def tiny(root) -> list[str]:
    return ["dataset=moving_mnist", "model=video_vae", f"dataset.root={root}", f"dataset.image_size={SIZE}",
            f"dataset.frames={FRAMES}", "model.width=8", "model.hidden=16", "model.static_dim=3", "model.dynamic_dim=2",
            "trainer.batch_size=4", "trainer.log_every=2", "trainer.sample_every=2", "trainer.ckpt_every=2",
            "trainer.grid_size=4", "trainer.final_images=8", "hardware=cpu", "hardware.threads=1"]


def model(decoder: str = "conv") -> VideoVAE:
    torch.manual_seed(0)
    return VideoVAE({**MODEL, "decoder": decoder}, OPTIMIZER, (FRAMES, 1, SIZE, SIZE), 1, torch.device("cpu"))


@pytest.mark.parametrize("decoder", DECODERS)
def test_decode_is_a_deterministic_function_of_the_latent_whose_parts_split_digits_and_path(decoder):
    vae = model(decoder)
    vae.train(False)
    z = vae.prior(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 4 + FRAMES * 2)
    clips = vae.decode(z)
    assert clips.shape == (3, FRAMES, 1, SIZE, SIZE) and 0 <= clips.min() and clips.max() <= 1
    assert torch.equal(clips, vae.decode(z.clone()))
    # The static part is the same code in every frame; the motion noise only feeds z_t from frame t on.
    later = z.clone()
    later[:, 4 + 2 * (FRAMES - 1):] += 1.0                  # the last frame's noise only
    changed = (vae.decode(later) - clips).abs().flatten(2).amax(2)
    assert (changed[:, : FRAMES - 1] == 0).all() and (changed[:, -1] > 0).all()


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_training_step_on_one_batch_lowers_the_loss(decoder):
    vae = model(decoder)
    clips = torch.rand(4, FRAMES, 1, SIZE, SIZE).round()
    torch.manual_seed(1)
    first = vae.train_step(Batch(clips, torch.zeros(4, dtype=torch.long)))
    for _ in range(30):
        last = vae.train_step(Batch(clips, torch.zeros(4, dtype=torch.long)))
    assert set(first) >= {"recon_nats", "kl_static_nats", "kl_motion_nats", "neg_elbo_nats", "neg_elbo_nats_per_frame"}
    assert float(last["loss_nats"]) < float(first["loss_nats"])
    assert float(first["neg_elbo_nats_per_frame"]) == pytest.approx(float(first["neg_elbo_nats"]) / FRAMES)
    if decoder == "conv":  # −ELBO per clip: the summed BCE of FRAMES·SIZE² pixels (≈ log 2 each at the start)
        assert float(first["recon_nats"]) == pytest.approx(FRAMES * SIZE * SIZE * np.log(2), rel=0.1)


class Returns(torch.nn.Module):
    """A stand-in network: forward(x) = function(x)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


def test_sprites_are_drawn_from_s_alone_moved_by_z_and_merged_by_max():
    decoder = model("sprites").decoder
    assert decoder.sprite_size == SIZE // 2
    b = decoder.background.item()
    dots = torch.full((2, 1, 8, 8), b)  # slot k's sprite: background but one bright pixel at (row 2 + k, column 5)
    dots[0, 0, 2, 5], dots[1, 0, 3, 5] = 4.0, 6.0
    decoder.sprite = Returns(lambda codes: dots.repeat(len(codes) // 2, 1, 1, 1))
    # tanh(where(z)) = centres: slot 0 at the frame's centre, slot 1 shifted by (+0.5, −0.25) of the half-side
    centres = torch.tensor([[0.0, 0.0, 0.5, -0.25]])
    decoder.where = Returns(lambda z: torch.atanh(centres).expand(len(z), -1))
    with torch.no_grad():
        frame = decoder(torch.zeros(1, 4 + 2))[0, 0]
    # frame pixel = sprite pixel + 4 (a centred 8 px sprite on 16 px) + the centre × 8 px
    assert frame[2 + 4, 5 + 4] == pytest.approx(4.0, abs=1e-4) and frame[3 + 4 - 2, 5 + 4 + 4] == pytest.approx(6.0, abs=1e-4)
    others = frame.clone()
    others[6, 9] = others[5, 13] = b
    assert torch.allclose(others, torch.full_like(others, b), atol=1e-4)  # background b wherever no sprite is bright
    centres[0, 2:] = 0.0  # both sprites at the centre, one pixel apart: each keeps its own, the max of the two
    with torch.no_grad():
        frame = decoder(torch.zeros(1, 4 + 2))[0, 0]
    assert frame[6, 9] == pytest.approx(4.0, abs=1e-4) and frame[7, 9] == pytest.approx(6.0, abs=1e-4)


def test_s_alone_sets_the_sprites_shapes():
    vae = model("sprites")
    vae.train(False)
    z = vae.prior(2, torch.Generator().manual_seed(0))
    moved = z.clone()
    moved[:, 4:] = torch.randn(2, FRAMES * 2)  # another path: the same sprites, elsewhere
    sprites = lambda latents: vae.decoder.sprite(latents[:, :4].reshape(4, 2))  # noqa: E731
    assert torch.equal(sprites(z), sprites(moved)) and not torch.equal(vae.decode(z), vae.decode(moved))


@needs_mnist
@pytest.mark.parametrize("decoder", DECODERS)
def test_resumed_run_equals_uninterrupted_run(tmp_path, data_root, decoder):
    straight, split = tmp_path / "straight", tmp_path / "split"

    def compose(*overrides):
        return compose_jobs("train", [*tiny(data_root), f"model.decoder={decoder}", "model.static_dim=4", *overrides],
                            False)[0]

    train(compose("trainer.max_steps=6"), straight)
    train(compose("trainer.max_steps=3"), split)
    assert train(compose("trainer.max_steps=6", f"resume={split}"), split)["step"] == 6
    assert_same(training_state(straight / "checkpoints" / "last.pt"), training_state(split / "checkpoints" / "last.pt"))
    expected, got = logged(straight), logged(split)
    assert "train/neg_elbo_nats_per_frame" in expected and got.keys() == expected.keys()
    for tag, points in expected.items():
        assert [p for p in got[tag] if p[0] != 3] == points, tag
    for png in (straight / "samples").iterdir():
        assert (split / "samples" / png.name).read_bytes() == png.read_bytes(), png.name


@needs_mnist
def test_the_cli_trains_and_sample_writes_a_gif_and_a_film_strip(tmp_path, data_root):
    result = genlab("train", *tiny(data_root), "trainer.max_steps=2", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"video_vae on moving_mnist/train ({FRAMES}, 1, {SIZE}, {SIZE})" in result.stdout + result.stderr
    strip = Image.open(tmp_path / "run" / "samples" / "step_0000002_samples.png")   # the logged film strip
    assert strip.size == (FRAMES * (SIZE + PADDING) + PADDING, 8 * (SIZE + PADDING) + PADDING)

    result = genlab("sample", "ckpt=run", "n=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    gif_path, png_path = (tmp_path / line for line in result.stdout.split())
    assert gif_path.suffix == ".gif" and png_path.suffix == ".png"
    gif = Image.open(gif_path)
    assert gif.n_frames == FRAMES and gif.info["loop"] == 0
    assert gif.size == (3 * (SIZE + PADDING) + PADDING, 2 * (SIZE + PADDING) + PADDING)   # 6 clips, 3 a row
    frames = []
    for t in range(FRAMES):
        gif.seek(t)
        frames.append(np.asarray(gif.convert("L")))
    strip = np.asarray(Image.open(png_path).convert("L"))
    assert strip.shape == (6 * (SIZE + PADDING) + PADDING, FRAMES * (SIZE + PADDING) + PADDING)
    # Clip 4 (row 1, column 1 of the GIF's grid) at frame t is row 4, column t of the film strip.
    cell = lambda image, row, col: image[PADDING + row * (SIZE + PADDING):][:SIZE, PADDING + col * (SIZE + PADDING):][:, :SIZE]
    for t in range(FRAMES):
        assert np.array_equal(cell(frames[t], 1, 1), cell(strip, 4, t))
    again = genlab("sample", "ckpt=run", "n=6", "out=again.png", cwd=tmp_path)
    assert again.returncode == 0 and (tmp_path / "again.gif").read_bytes() == gif_path.read_bytes()

    result = genlab("sample", "ckpt=run", "n=3", "out=clips.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / "clips.npz")["images"].shape == (3, FRAMES, SIZE, SIZE, 1)



@pytest.mark.parametrize("overrides, message", [
    (["model=vae", "dataset=moving_mnist"], "model=vae is not allowed with dataset=moving_mnist: the model generates "
     "still images and the dataset holds clips; pick a model and a dataset of the same kind"),
    (["model=video_vae", "dataset=shapes"], "model=video_vae is not allowed with dataset=shapes: the model generates "
     "clips and the dataset holds still images; pick a model and a dataset of the same kind"),
    (["model=video_vae", "dataset=moving_mnist", "dataset.frames=1"],
     "dataset.frames=1 is not allowed with model=video_vae: its motion prior needs clips of at least 2 frames"),
    (["model=video_vae", "dataset=moving_mnist", "model.static_dim=0"],
     "model.static_dim=0 is not allowed: expected an integer >= 1"),
    (["model=video_vae", "dataset=moving_mnist", "model.decoder=mlp"],
     "model.decoder='mlp' is not allowed: choose one of conv, sprites"),
    (["model=video_vae", "dataset=moving_mnist", "model.decoder=sprites", "model.static_dim=15"],
     "model.static_dim=15 is not allowed with model.decoder=sprites and model.slots=2: each slot takes an equal "
     "share of s; use a multiple of 2"),
])
def test_clips_and_still_images_do_not_mix(overrides, message):
    (cfg,) = compose_jobs("train", overrides, multirun=False)
    with pytest.raises(ConfigError) as raised:
        validate_train(cfg)
    assert str(raised.value) == message


@pytest.fixture(scope="module", params=DECODERS)
def explorer(request, tmp_path_factory, data_root):
    """A tiny video_vae checkpoint (2 steps) behind a running explore server: (url, ckpt)."""
    import threading

    from genlab.explore.server import Explorer, ExploreServer

    run = tmp_path_factory.mktemp("explore") / "run"
    overrides = [*tiny(data_root), "trainer.max_steps=2", f"model.decoder={request.param}", "model.static_dim=4"]
    train(compose_jobs("train", overrides, False)[0], run, overrides)
    server = ExploreServer(Explorer(run / "checkpoints" / "last.pt", log=lambda line: None), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url, run / "checkpoints" / "last.pt"
    server.shutdown()


def gif_frames(b64: str) -> list[np.ndarray]:
    import base64
    import io

    gif = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert gif.format == "GIF"
    frames = []
    for t in range(gif.n_frames):
        gif.seek(t)
        frames.append(np.asarray(gif.convert("L")).astype(int))
    return frames


@needs_mnist
def test_explore_serves_clips_whose_static_and_motion_sliders_move_different_things(explorer):
    from test_explore import call

    url, _ = explorer
    status, info = call(url + "api/info")
    assert status == 200 and info["mime"] == "image/gif" and info["image_shape"] == [FRAMES, 1, SIZE, SIZE]
    names = [d["name"] for d in info["directions"]]
    assert [n.split()[0] for n in names[:10]] == ["static"] * 4 + ["motion"] * 6   # static_dim=4: all four, then motion
    status, answer = call(url + "api/decode", {"seed": 3})
    assert status == 200 and len(gif_frames(answer["images"][0])) == FRAMES and answer["ms"] > 0
    z = np.array(answer["latents"][0])
    static = np.array(info["directions"][0]["vector"])
    last_motion = np.zeros_like(z)
    last_motion[4 + 2 * (FRAMES - 1)] = 1.0                       # ε of the last frame
    status, moved = call(url + "api/decode", {"latents": [z.tolist(), (z + 3 * static).tolist(),
                                                          (z + 3 * last_motion).tolist()]})
    assert status == 200
    base, by_static, by_motion = (gif_frames(b64) for b64 in moved["images"])
    assert sum(np.abs(a - b).sum() > 0 for a, b in zip(base, by_static)) == FRAMES      # every frame's digits
    assert [int(np.abs(a - b).sum() > 0) for a, b in zip(base, by_motion)] == [0] * (FRAMES - 1) + [1]  # from t on


@needs_mnist
def test_headless_chromium_plays_the_clip_and_a_slider_changes_it(explorer):
    import time

    from test_explore import READ_PIXELS, browser, wait_for

    url, _ = explorer
    driver = browser()
    try:
        driver.get(url)
        wait_for(lambda: driver.execute_script("return window.explorer.stats.frames > 0 "
                                               "&& document.getElementById('current').complete"))
        src, pixels = driver.execute_script(READ_PIXELS)  # RGBA of a square image
        assert src.startswith("data:image/gif;base64") and len(pixels) == 4 * SIZE * SIZE
        # The clip plays in a loop: screenshots of the shown picture change within two loops (a canvas
        # cannot tell: drawImage of an animated image draws its first frame, by the HTML spec).
        from selenium.webdriver.common.by import By

        current = driver.find_element(By.ID, "current")
        seen, deadline = {current.screenshot_as_png}, time.monotonic() + 2 * FRAMES * 0.1 + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.add(current.screenshot_as_png)
            time.sleep(0.03)
        assert len(seen) >= 3
        src = driver.execute_script("return document.getElementById('current').src")
        driver.execute_script("const s = document.querySelector('#sliders input'); "
                              "s.value = Number(s.value) > 0 ? -2.5 : 2.5; s.dispatchEvent(new Event('input'));")
        wait_for(lambda: driver.execute_script("return document.getElementById('current').src") != src)
        stats = driver.execute_script("return document.getElementById('stats').textContent")
        assert re.match(r"server \d+\.\d\d ms/clip · round trip", stats), stats   # the latency per clip
        assert driver.execute_script("return document.getElementById('error').textContent") == ""
    finally:
        driver.quit()
