"""genlab explore: the API gives the pixels `genlab sample` writes, refuses bad requests with one
line, the command line checks its keys and stops on Ctrl-C, and a real headless Chromium sees the
image change when a slider moves (VAE and cGAN), and a diffusion model's image drawn as a draft at
fewer solver steps while a slider is dragged, then redrawn at its own steps on release."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, genlab
from PIL import Image

from genlab.config.compose import compose_jobs
from genlab.explore.server import Explorer, ExploreServer
from genlab.images import PADDING
from genlab.commands.sample import sample
from genlab.commands.train import train


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Tiny VAE and cGAN checkpoints (2 steps), each behind a running explore server: name → (url, ckpt)."""
    base = tmp_path_factory.mktemp("explore")
    running = {}
    for name in ("vae", "cgan"):
        overrides = [*TINY, f"model={name}", "trainer.max_steps=2"]
        train(compose_jobs("train", overrides, False)[0], base / name, overrides)
        ckpt = base / name / "checkpoints" / "last.pt"
        server = ExploreServer(Explorer(ckpt, log=lambda line: None), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running[name] = (server.url, ckpt)
    yield running


def call(url: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_api_gives_the_pixels_genlab_sample_writes(servers, tmp_path):
    url, ckpt = servers["vae"]
    status, answer = call(url + "api/decode", {"seed": 5})
    assert status == 200 and answer["command"].endswith("n=1 seed=5 out=explore_seed5.png")
    out = sample(str(ckpt), 1, 5, str(tmp_path / "s.png"), mode="grid", steps=8, label=None)
    written = pixels(out.read_bytes())[PADDING:-PADDING, PADDING:-PADDING]
    served = pixels(base64.b64decode(answer["images"][0]))
    assert served.shape == written.shape == (16, 16, 3)
    np.testing.assert_array_equal(served, written)

    # An edited latent of a cGAN in class 2: the command the page prints, run as a user would.
    url, ckpt = servers["cgan"]
    size = call(url + "api/info")[1]["latent_size"]
    latent = torch.randn(size, generator=torch.Generator().manual_seed(1)).mul(1.7).tolist()
    status, answer = call(url + "api/decode", {"latents": [latent], "labels": [2]})
    assert status == 200 and " label=2 " in answer["command"]
    words = shlex.split(answer["command"])
    assert words[:2] == ["genlab", "sample"]
    result = genlab(*words[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = pixels((tmp_path / words[-1].split("=", 1)[1]).read_bytes())[PADDING:-PADDING, PADDING:-PADDING]
    served = pixels(base64.b64decode(answer["images"][0]))
    np.testing.assert_array_equal(served, written)
    assert served.std() > 0  # not a blank image that anything would match


def test_bad_requests_get_a_4xx_and_one_line(servers):
    url, _ = servers["cgan"]
    size = call(url + "api/info")[1]["latent_size"]
    zeros = [0.0] * size
    cases = [
        ("api/decode", b"{not json", 400, "not JSON"),
        ("api/decode", json.dumps({"latents": [[0.0] * (size - 1)], "labels": [0]}).encode(), 400, f"list of {size} numbers"),
        ("api/decode", json.dumps({"latents": [zeros] * 65, "labels": [0] * 65}).encode(), 400, "1..64 latents"),
        ("api/decode", json.dumps({"latents": [[11.0] + zeros[1:]], "labels": [0]}).encode(), 400, "in [-10, 10]"),
        ("api/decode", json.dumps({"latents": [zeros], "labels": [0]}).replace("0.0", "NaN", 1).encode(), 400, "NaN"),
        ("api/decode", json.dumps({"latents": [zeros], "labels": [3]}).encode(), 400, "label=3 is not allowed"),
        ("api/decode", json.dumps({"latents": [zeros]}).encode(), 400, "labels must be a list of 1"),
        ("api/decode", json.dumps({"seed": -1}).encode(), 400, "seed=-1"),
        ("api/decode", json.dumps({"slerp": {"a": zeros, "b": zeros, "t": [1.5]}, "labels": [0]}).encode(), 400, "slerp.t"),
        ("api/decode", json.dumps([1, 2]).encode(), 400, "JSON object"),
        ("api/encode", json.dumps({"index": 0}).encode(), 400, "has no encoder"),
        ("etc/passwd", None, 404, "no route"),
        ("../checkpoints/last.pt", None, 404, "no route"),
    ]
    for path, raw, status, words in cases:
        got, answer = call(url + path, raw=raw)
        assert (got, "\n" in answer["error"]) == (status, False), (path, answer)
        assert words in answer["error"], (path, answer)
    # A huge Content-Length is refused before its body is read.
    connection = http.client.HTTPConnection(*urllib.parse.urlsplit(url).netloc.split(":"), timeout=30)
    connection.putrequest("POST", "/api/decode")
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "more than" in json.loads(response.read())["error"]
    connection.close()
    assert call(url + "api/info")[0] == 200  # still up
    status, answer = call(servers["vae"][0] + "api/decode", {"seed": 0, "label": 1})
    assert status == 400 and "has no classes" in answer["error"]


def test_a_page_of_another_site_cannot_drive_the_server(servers):
    url, _ = servers["vae"]
    own = urllib.parse.urlsplit(url).netloc  # 127.0.0.1:<port>

    def post(headers: dict) -> tuple[int, dict]:
        # A page's form or fetch can send text/plain without a CORS preflight.
        connection = http.client.HTTPConnection(own, timeout=30)
        try:
            connection.request("POST", "/api/decode", body=json.dumps({"seed": 1}),
                               headers={"Content-Type": "text/plain", **headers})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    for origin in ("http://evil.example", "null", f"http://localhost:{own.split(':')[1]}"):
        status, answer = post({"Origin": origin})
        assert status == 403 and "\n" not in answer["error"], answer
        assert answer["error"] == (f"a request from another site's page ({origin}) is refused: use the explorer's "
                                   f"own page, http://{own}/")
    assert post({"Origin": f"http://{own}"})[0] == 200  # the explorer's own page
    assert post({})[0] == 200  # curl, scripts


def test_command_line_keys_errors_and_ctrl_c(servers, tmp_path):
    help_text = genlab("explore", "--help", cwd=tmp_path).stdout
    assert all(key in help_text for key in ("ckpt: ???", "port: 8765", "host: 127.0.0.1", "data_root"))
    for args in (["ckpt=nowhere/last.pt"], ["ckpt=nowhere/last.pt", "colour=red"]):
        explore, sampled = (genlab(command, *args, cwd=tmp_path) for command in ("explore", "sample"))
        assert explore.returncode == sampled.returncode == 1
        assert explore.stderr.replace("genlab explore", "genlab sample").replace("explore --cfg", "sample --cfg") \
            == sampled.stderr and explore.stderr.count("\n") == 1, explore.stderr
    assert "port=70000 is not allowed" in genlab("explore", "ckpt=x", "port=70000", cwd=tmp_path).stderr

    _, ckpt = servers["vae"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Ctrl-C as a terminal delivers it: a test run started in the background (`cmd &`) ignores SIGINT,
    # which its children would inherit, so the server gets the default disposition back first.
    process = subprocess.Popen([sys.executable, "-m", "genlab.cli", "explore", f"ckpt={ckpt}", "port=0", "host=0.0.0.0"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://0.0.0.0:"), process.stderr.read()
        assert call(url + "api/info")[1]["kind"] == "VAE"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode in (0, 130) and "Traceback" not in stderr, stderr
    assert "anyone who can reach this machine" in stderr


def browser():
    """Headless Chromium driven by chromedriver, both from the system (Debian's chromium and
    chromium-driver): nothing downloads a browser. Fails under CI when they are missing."""
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not chromium or not driver:
        missing = "selenium (pip install -e '.[test]')" if webdriver is None else "chromium and chromium-driver (apt-get)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"the browser test needs {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1180,980"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


READ_PIXELS = """
const img = document.getElementById('current');
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(img, 0, 0);
return [img.src, Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
"""


def wait_for(condition, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "the page did not update"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("name", ["vae", "cgan"])
def test_headless_chromium_sees_the_image_change_when_a_slider_moves(servers, name):
    url, _ = servers[name]
    driver = browser()
    try:
        driver.get(url)
        wait_for(lambda: driver.execute_script("return window.explorer.stats.frames > 0 "
                                               "&& document.getElementById('current').complete"))
        src, before = driver.execute_script(READ_PIXELS)
        assert len(before) == 16 * 16 * 4
        sliders = driver.execute_script("return document.querySelectorAll('#sliders input').length")
        assert sliders >= 1
        driver.execute_script("const s = document.querySelector('#sliders input'); "
                              "s.value = Number(s.value) > 0 ? -2.5 : 2.5; s.dispatchEvent(new Event('input'));")
        wait_for(lambda: driver.execute_script("return document.getElementById('current').src") != src
                 and driver.execute_script("return document.getElementById('current').complete"))
        _, after = driver.execute_script(READ_PIXELS)
        assert after != before
        if name == "cgan":  # the class row: one image per class
            wait_for(lambda: driver.execute_script("return document.querySelectorAll('#classrow img').length") == 3)
        assert driver.execute_script("return document.getElementById('error').textContent") == ""
    finally:
        driver.quit()


# A tiny diffusion checkpoint whose own sample_steps exceed the draft's, so the two decodes differ.
DIFFUSION = ["model=diffusion", "model.blocks=1", "model.sample_steps=6"]


@pytest.fixture(scope="module")
def diffusion_server(tmp_path_factory):
    """A tiny diffusion checkpoint (2 steps, sample_steps=6) behind a running explore server: (url, ckpt)."""
    from genlab.explore.server import DRAFT_STEPS

    assert DRAFT_STEPS < 6
    base = tmp_path_factory.mktemp("explore_diffusion")
    overrides = [*TINY, *DIFFUSION, "trainer.max_steps=2"]
    train(compose_jobs("train", overrides, False)[0], base / "run", overrides)
    ckpt = base / "run" / "checkpoints" / "last.pt"
    server = ExploreServer(Explorer(ckpt, log=lambda line: None), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url, ckpt
    server.shutdown()
    server.server_close()


def test_a_draft_decodes_at_fewer_steps_and_its_command_writes_its_pixels(diffusion_server, servers, tmp_path):
    from genlab.explore.server import DRAFT_STEPS

    url, ckpt = diffusion_server
    info = call(url + "api/info")[1]
    assert (info["sample_steps"], info["draft_steps"]) == (6, DRAFT_STEPS)
    latent = torch.randn(info["latent_size"], generator=torch.Generator().manual_seed(2)).tolist()
    body = {"latents": [latent], "labels": [1]}
    full, draft = call(url + "api/decode", body)[1], call(url + "api/decode", {**body, "draft": True})[1]
    assert (full["sample_steps"], full["draft"], draft["sample_steps"], draft["draft"]) == (6, False, DRAFT_STEPS, True)
    assert "sample_steps" not in full["command"] and f" sample_steps={DRAFT_STEPS} " in draft["command"]
    assert call(url + "api/decode", body)[1]["images"] == full["images"]  # the model's own steps are back
    served = pixels(base64.b64decode(draft["images"][0]))
    assert not np.array_equal(served, pixels(base64.b64decode(full["images"][0])))
    printed = [float(v) for v in shlex.split(draft["command"])[4].split("=", 1)[1].strip("[]").split(",")]
    out = sample(str(ckpt), 1, 0, str(tmp_path / "d.png"), mode="grid", steps=8, label=1, latent=printed,
                 sample_steps=DRAFT_STEPS)
    np.testing.assert_array_equal(served, pixels(out.read_bytes())[PADDING:-PADDING, PADDING:-PADDING])

    # A one-pass family ignores draft; a draft that is not a boolean is refused.
    vae = servers["vae"][0]
    plain, drafted = call(vae + "api/decode", {"seed": 3})[1], call(vae + "api/decode", {"seed": 3, "draft": True})[1]
    assert plain["images"] == drafted["images"] and drafted["sample_steps"] is None and drafted["draft"] is False
    for value in (1, "yes", None):
        status, answer = call(url + "api/decode", {**body, "draft": value})
        assert status == 400 and answer["error"] == f"draft={json.dumps(value)} is not allowed: expected true or false"


def test_headless_chromium_drafts_while_dragging_and_redraws_on_release(diffusion_server, tmp_path):
    from genlab.explore.server import DRAFT_STEPS

    url, _ = diffusion_server
    driver = browser()
    try:
        driver.get(url)
        steps_text = lambda: driver.execute_script("return document.getElementById('steps').textContent")  # noqa: E731
        wait_for(lambda: steps_text().startswith("6 steps · ") and driver.execute_script(
            "return document.getElementById('current').complete"))
        src = driver.execute_script("return document.getElementById('current').src")
        driver.execute_script("const s = document.querySelector('#sliders input'); "
                              "s.value = Number(s.value) > 0 ? -2.5 : 2.5; s.dispatchEvent(new Event('input'));")
        wait_for(lambda: steps_text().startswith(f"draft {DRAFT_STEPS} steps · "))
        wait_for(lambda: driver.execute_script("return document.getElementById('current').complete"))
        draft_src, drafted = driver.execute_script(READ_PIXELS)
        assert draft_src != src and "sample_steps=4" in driver.execute_script(
            "return document.getElementById('command').textContent")
        driver.save_screenshot(str(tmp_path / "draft.png"))
        driver.execute_script("document.querySelector('#sliders input').dispatchEvent(new Event('change'));")
        wait_for(lambda: steps_text().startswith("6 steps · ") and driver.execute_script(
            "return document.getElementById('current').complete"))
        _, full = driver.execute_script(READ_PIXELS)
        assert full != drafted  # the same latent redrawn at the checkpoint's own steps
        assert steps_text().endswith(" ms") and driver.execute_script(
            "return document.getElementById('error').textContent") == ""
        driver.save_screenshot(str(tmp_path / "full.png"))
    finally:
        driver.quit()


def tiny_model(name: str):
    from omegaconf import OmegaConf

    from genlab.models import build_model

    cfg = OmegaConf.to_container(compose_jobs("train", [*TINY, f"model={name}"])[0], resolve=True)
    model = build_model(cfg["model"], cfg["optimizer"], (1, 16, 16), 3, torch.device("cpu"))
    model.train(False)
    return model


def test_directions_find_the_latent_the_networks_use_most():
    # VAE: make μ_5 vary most over the images, so its KL term is the largest.
    vae = tiny_model("vae")
    with torch.no_grad():
        vae.encoder.head.weight[5] *= 50
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    vectors, names = vae.directions(4, torch.Generator().manual_seed(0), x)
    assert vectors.shape == (4, vae.latent_dim) and vectors[0].argmax() == 5 and vectors[0].sum() == 1
    kls = [float(n.split("KL ")[1].split()[0]) for n in names]
    assert kls == sorted(kls, reverse=True) and kls[0] > 10 * kls[1]

    # GAN: scale the weights that read z_3 in the first layer; its activations then vary most along z_3.
    gan = tiny_model("gan")
    with torch.no_grad():
        gan.generator_ema.net.head.weight[:, 3] *= 10
    vectors, names = gan.directions(5, torch.Generator().manual_seed(0))
    assert vectors.shape == (5, gan.latent_dim) and names[0].startswith("PC0")
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(5))
    assert vectors[0, 3].abs() > 0.95
    # the base contract: raw coordinates
    base, _ = super(type(gan), gan).directions(3, torch.Generator())
    torch.testing.assert_close(base, torch.eye(gan.latent_dim)[:3])


def test_sample_latent_refuses_a_wrong_latent(servers, tmp_path):
    from genlab.errors import UserError

    _, ckpt = servers["vae"]
    for latent, words in (([1.0, 2.0], "latent= has 2 numbers"), ("abc", "expected a list of finite numbers"),
                          ([float("nan")] * 10, "expected a list of finite numbers")):
        with pytest.raises(UserError, match=words):
            sample(str(ckpt), 1, 0, str(tmp_path / "x.png"), mode="grid", steps=8, label=None, latent=latent)


def test_a_latent_may_hold_more_numbers_than_a_request_holds_images():
    explorer = object.__new__(Explorer)  # only the checks: an image-shaped prior of 2×16×16 numbers
    explorer.size, explorer.model = 512, tiny_model("vae")
    assert explorer._latents([[0.5] * 512] * 2, "latents").shape == (2, 512)


def test_the_printed_latent_reads_back_as_the_same_float32():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from genlab.explore.server import _float32_text

    # What the page prints is what `genlab sample latent=` decodes: Hydra reads each number as a
    # float64 and torch rounds it to float32. Fewer digits (e.g. 6) would fail here.
    values = torch.cat([torch.randn(2_000, generator=torch.Generator().manual_seed(0)) * 3,
                        torch.tensor([1e-30, -1e-8, 9.999999, 3.0, -0.0, 0.1])])
    (override,) = OverridesParser.create().parse_overrides(["latent=[" + ",".join(map(_float32_text, values.tolist())) + "]"])
    assert torch.equal(torch.tensor(override.value(), dtype=torch.float32), values)
