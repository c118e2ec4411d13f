"""genlab explore's speed: server milliseconds per image and page updates per second while dragging.

For each checkpoint given:
- ms/image: the generator alone (`model.decode` of one latent, median over 300 calls after 30 of
  warm-up) with torch.set_num_threads(1) and (2); then the PNG encoding; then one whole HTTP
  request /api/decode from Python (median of 100);
- updates/s: a headless Chromium (the system's chromium + chromedriver, via selenium) opens the page
  and, for `--seconds`, sets the first slider to a new value and dispatches an `input` event every
  4 ms (faster than a hand drags); an update is a new main image the page shows. The page keeps one
  request in flight, so this is how fast the loop of request → decode → PNG → display turns.
- `--screenshot PATH`: a screenshot of the page afterwards (the window is 1180×980), with seed 0's
  sample pinned as A, seed 7's as B, and the slerp scrubbed halfway.

    PYTHONPATH=. python benchmarks/explore_page.py outputs/<run>/checkpoints/last.pt [--screenshot docs/x.png]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_explore import browser  # noqa: E402  the same headless Chromium as the test

from genlab.explore.server import Explorer, ExploreServer  # noqa: E402
from genlab.images import png_bytes  # noqa: E402

DRAG = """
const [seconds, done] = arguments;
const slider = document.querySelector('#sliders input');
const start = performance.now(), first = window.explorer.stats.frames;
let i = 0;
const timer = setInterval(() => {
  slider.value = 2.5 * Math.sin(i++ / 15);
  slider.dispatchEvent(new Event('input'));
  if (performance.now() - start > 1000 * seconds) {
    clearInterval(timer);
    slider.dispatchEvent(new Event('change'));  // the release
    done((window.explorer.stats.frames - first) / ((performance.now() - start) / 1000));
  }
}, 4);
"""


def median_ms(function, repeats: int, warmup: int = 30) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(ckpt: Path, seconds: float, screenshot: Path | None) -> dict:
    explorer = Explorer(ckpt, log=lambda line: None)
    model = explorer.model
    z = model.prior(1, torch.Generator().manual_seed(0))
    labels = None if model.num_classes is None else torch.zeros(1, dtype=torch.long)
    result = {"checkpoint": str(ckpt), "kind": model.kind, "image_shape": list(model.image_shape)}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        result[f"decode_ms_threads{threads}"] = median_ms(lambda: model.decode(z, labels), 300)
    torch.set_num_threads(1)  # as genlab explore runs
    image = model.decode(z, labels)[0]
    result["png_ms"] = median_ms(lambda: png_bytes(image), 300)
    server = ExploreServer(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = json.dumps({"latents": [z.flatten().tolist()], "labels": None if labels is None else [0]}).encode()
    result["http_request_ms"] = median_ms(lambda: urllib.request.urlopen(urllib.request.Request(server.url + "api/decode", body)).read(), 100, 10)

    driver = browser()
    try:
        driver.set_script_timeout(seconds + 30)
        driver.get(server.url)
        deadline = time.monotonic() + 30
        while not driver.execute_script("return window.explorer.stats.frames > 0"):
            assert time.monotonic() < deadline, "the page shows no image"
            time.sleep(0.05)
        result["page_updates_per_s"] = driver.execute_async_script(DRAG, seconds)
        # for the screenshot: pin this image as A, a new sample as B, scrub halfway
        seed = "const s = document.getElementById('seed'); s.value = {}; s.dispatchEvent(new Event('change'));"
        driver.execute_script(seed.format(0))
        time.sleep(1)
        driver.execute_script("document.getElementById('pinA').click();" + seed.format(7))
        time.sleep(1)
        driver.execute_script("document.getElementById('pinB').click(); const t = document.getElementById('scrub'); "
                              "t.value = 0.5; t.dispatchEvent(new Event('input'));")
        time.sleep(1.5)  # let the neighbours and class row settle
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as picture:  # 64 colours: a small file
                picture.convert("RGB").quantize(64).save(screenshot, optimize=True)
    finally:
        driver.quit()
        server.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the slider is dragged")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps(measure(args.ckpt, args.seconds, args.screenshot), indent=1))


if __name__ == "__main__":
    main()
