"""genlab explore's server: one checkpoint's model behind a small JSON API and one static page.

One module just past ~350 lines on purpose: the model side (Explorer) and the HTTP side (Handler)
answer the same routes, which change together with page.html's requests.

The standard library's ThreadingHTTPServer: no dependency, works offline, and the time per request
is the model's (docs in README "Explore": ~1 ms per 32 px image on one CPU core). Model calls take a
lock, so requests decode one at a time; the page keeps at most one request in flight.

Routes (nothing else is served; no request names a file):

    GET  /             the page (genlab/explore/page.html)
    GET  /api/info     the model: kind, classes, latent size, slider directions, real images, …
    POST /api/decode   {"seed": S, "label": K}            the latent `genlab sample seed=S n=1` draws
                       {"latents": [[…], …], "labels": […]} latents as flat lists (labels: cgan)
                       {"slerp": {"a": […], "b": […], "t": [t…]}, "labels": […]}   points on the
                          great circle from a to b (genlab.commands.sample.slerp, as `mode=interpolate`)
                       any of them with "draft": true (while a slider is dragged; see below)
                       → {"images": [PNG as base64…; a GIF for a model of clips], "latents": [[float32…]], "labels", "ms",
                          "sample_steps": the solver steps decoded (null: a one-pass family), "draft",
                          "command": the `genlab sample` command that writes images[0]}
    POST /api/encode   {"index": i}   the posterior mean of real image i (models with an encoder)

Images are 8-bit PNGs made with genlab.images.png_bytes, the rule `genlab sample` writes with, so
the page shows exactly the pixels of the command it prints. A bad request gets a 4xx and
{"error": one line}. A request whose Origin header names another site (a page open in the same
browser) gets 403, so no other page can drive the model; the explorer's own page and clients that
send no Origin (curl, scripts) are answered.

Drafts. A model whose decode is an iterative solve (`sample_steps`, genlab/models/base.py; diffusion:
2·steps − 1 network evaluations, ~10× a one-pass decode at 18 steps) would make a dragged slider
lag, so the page asks for a draft while dragging: decoded at min(DRAFT_STEPS, sample_steps) steps,
then redrawn at the checkpoint's own sample_steps on release. The images of a draft are those of
`genlab sample sample_steps=K`, which its printed command says. A one-pass family ignores "draft".
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shlex
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from genlab import images
from genlab.errors import UserError
from genlab.models.base import capabilities
from genlab.commands.sample import latents as sample_latents
from genlab.commands.sample import slerp

MAX_BODY_BYTES = 1 << 20
MAX_IMAGES = 64  # per request: a 4×4 neighbour strip, a class row, a batch of pins
MAX_ABS = 10.0  # |latent value|; the prior is N(0, 1), sliders span ±3
DIRECTIONS = 64  # sliders along model.directions (the page shows the first 10, the rest folded)
REAL_IMAGES = 32  # test images offered to "start from a real image"
ACTIVITY_IMAGES = 1000  # test images a model's directions are measured on (e.g. the KL per latent)
DIRECTION_SEED = 0
# Solver steps of a draft decode. EDM's Heun sampler at 4 steps (7 network evaluations, σ from 80 to
# 0.002 on the ρ = 7 schedule) already draws the image's layout, which is what a dragged slider shows;
# any steps >= 1 are valid for it (1: a single Euler step).
DRAFT_STEPS = 4
PAGE = Path(__file__).with_name("page.html")


class BadRequest(Exception):
    """A request the API refuses: status and one line."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def _b64png(image: torch.Tensor) -> str:
    """An image as a base64 PNG; a clip (T, C, H, W) as a base64 looping GIF (info's `mime` says which)."""
    return base64.b64encode(images.sample_bytes(image)[0]).decode("ascii")


def _float32_text(value: float) -> str:
    """A decimal that `genlab sample latent=` reads back as exactly this float32 (Hydra parses a
    float64, torch rounds it to float32): numpy's shortest float32 repr, or the float64 repr of the
    value where rounding twice would land on a neighbour."""
    import numpy as np

    short = str(np.float32(value))
    return short if np.float32(float(short)) == np.float32(value) else repr(float(np.float32(value)))


class Explorer:
    """One checkpoint's model and what the page asks of it; no HTTP here."""

    def __init__(self, ckpt: Path, data_root: str | None = None, log=print):
        from genlab.models import model_from_checkpoint
        from genlab.training.checkpoint import load_checkpoint

        self.ckpt = ckpt
        state = load_checkpoint(ckpt)
        self.model = model_from_checkpoint(state, torch.device("cpu"))
        classes = self.model.num_classes or 0
        self.class_names = [str(n) for n in (state["data"].get("class_names") or range(classes))][:classes]
        self.shape = self.model.prior(1, torch.Generator().manual_seed(0)).shape[1:]
        self.size = math.prod(self.shape)
        self.lock = threading.Lock()
        dataset = {**state["config"]["dataset"], "download": False}  # the page works offline; it reads what is here
        if data_root is not None and "root" in dataset:
            dataset["root"] = data_root
        self.real, self.real_note = self._real_images(dataset)
        self.has_encoder = "encoder" in capabilities(self.model)
        self.sample_steps = getattr(self.model, "sample_steps", None)  # the checkpoint's own; None: one pass
        self.directions, self.direction_names = self._directions(log)

    def _real_images(self, dataset: dict) -> tuple[torch.Tensor | None, str]:
        """Up to ACTIVITY_IMAGES test images in [0, 1], or None and why not."""
        from genlab.metrics.splits import split_data

        try:
            test = split_data(dataset, "test")
            count = min(ACTIVITY_IMAGES, test.num_images)
            return test.images(torch.arange(count)).float().div(255), f"the first {count} test images of {dataset['name']}"
        except (UserError, OSError) as e:
            return None, f"no dataset images ({str(e).split(';')[0]})"

    def _directions(self, log) -> tuple[torch.Tensor, list[str]]:
        """model.directions, cached beside the checkpoint, keyed by its bytes and the images used."""
        from genlab.files import write_atomically

        key = hashlib.sha256(self.ckpt.read_bytes() + self.real_note.encode()).hexdigest()  # weights and images
        cache = self.ckpt.with_name(self.ckpt.stem + ".explore.pt")
        try:
            saved = torch.load(cache, weights_only=True)
            if saved.get("key") == key and saved.get("count") == DIRECTIONS:
                return saved["vectors"], saved["names"]
        except Exception:  # no cache, or an unreadable one: compute again
            pass
        start = time.perf_counter()
        vectors, names = self.model.directions(DIRECTIONS, torch.Generator().manual_seed(DIRECTION_SEED), self.real)
        log(f"genlab explore: {len(names)} slider directions in {time.perf_counter() - start:.1f} s, cached in {cache}")
        try:
            state = {"key": key, "count": DIRECTIONS, "vectors": vectors.contiguous(), "names": names}
            write_atomically(cache, lambda f: torch.save(state, f))
        except OSError as e:
            log(f"genlab explore: cannot cache the directions in {cache} ({e.strerror}); they are computed at each start")
        return vectors, names

    # -- the API ---------------------------------------------------------------------------------

    def info(self) -> dict:
        flat = self.directions.flatten(1)
        axis_aligned = bool(((flat != 0).sum(1) == 1).all())
        return {
            "kind": self.model.kind, "checkpoint": str(self.ckpt), "image_shape": list(self.model.image_shape),
            "mime": "image/gif" if self.model.clips else "image/png",  # a clip plays as a looping GIF
            "latent_size": self.size, "classes": self.class_names, "encoder": self.has_encoder,
            "directions": [{"name": n, "vector": v} for n, v in zip(self.direction_names, flat.tolist())],
            # the raw coordinates get sliders of their own unless the directions already are coordinates
            "raw_sliders": not axis_aligned, "sliders_title": self.model.directions_title,
            "real": [_b64png(x) for x in self.real[:REAL_IMAGES]] if self.real is not None and self.has_encoder else [],
            "real_note": self.real_note, "limits": {"images": MAX_IMAGES, "abs": MAX_ABS},
            "sample_steps": self.sample_steps,
            "draft_steps": None if self.sample_steps is None else min(DRAFT_STEPS, self.sample_steps),
        }

    def decode(self, body) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object with seed, latents or slerp")
        forms = [k for k in ("seed", "latents", "slerp") if k in body]
        if len(forms) != 1:
            raise BadRequest("give exactly one of seed, latents or slerp")
        draft = body.get("draft", False)
        if not isinstance(draft, bool):
            raise BadRequest(f"draft={json.dumps(draft)[:40]} is not allowed: expected true or false")
        steps = self.sample_steps if self.sample_steps is None or not draft else min(DRAFT_STEPS, self.sample_steps)
        if forms[0] == "seed":
            seed, label = self._integer(body["seed"], "seed", 0, 2**63 - 1), body.get("label")
            if label is not None:
                self._labels([label], 1)
            with self.lock:
                try:
                    z, labels, _ = sample_latents(self.model, "grid", 1, 2, label, torch.Generator().manual_seed(seed))
                except UserError as e:
                    raise BadRequest(str(e)) from None
            options = [f"seed={seed}", *([f"label={label}"] if label is not None else [])]
            return self._images(z.flatten(1), labels, options, steps)
        if forms[0] == "latents":
            z = self._latents(body["latents"], "latents")
        else:
            ends = body["slerp"]
            if not isinstance(ends, dict) or set(ends) != {"a", "b", "t"}:
                raise BadRequest('slerp must be {"a": [latent], "b": [latent], "t": [fractions in 0..1]}')
            a, b = (self._latents([ends[k]], f"slerp.{k}") for k in "ab")
            t = self._numbers(ends["t"], "slerp.t", 0.0, 1.0)
            z = slerp(a[:, None], b[:, None], torch.tensor(t, dtype=torch.float32)[:, None])[0]
        labels = self._labels(body.get("labels"), len(z))
        return self._images(z, labels, None, steps)

    def encode(self, body) -> dict:
        if not self.has_encoder:
            raise BadRequest(f"this {self.model.kind} has no encoder: real images can be explored with a model that has one")
        if self.real is None:
            raise BadRequest(f"no real images to encode: {self.real_note}; pass data_root=<folder with the dataset>")
        index = self._integer(body.get("index") if isinstance(body, dict) else None, "index", 0, min(REAL_IMAGES, len(self.real)) - 1)
        with self.lock:
            z = self.model.encode(self.real[index : index + 1]).float().cpu()
        return {"latents": [[float(v) for v in z.flatten()]]}

    # -- checks and helpers ----------------------------------------------------------------------

    @staticmethod
    def _integer(value, name: str, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BadRequest(f"{name}={json.dumps(value)} is not allowed: expected an integer in {low}..{high}")
        return value

    @staticmethod
    def _numbers(values, name: str, low: float, high: float, count: int = MAX_IMAGES) -> list[float]:
        if not isinstance(values, list) or not 1 <= len(values) <= count:
            raise BadRequest(f"{name} must be a list of 1..{count} numbers")
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not low <= v <= high:
                raise BadRequest(f"{name} holds {json.dumps(v)}: expected finite numbers in [{low:g}, {high:g}]")
        return values

    def _latents(self, rows, name: str) -> torch.Tensor:
        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_IMAGES:
            raise BadRequest(f"{name} must be a list of 1..{MAX_IMAGES} latents")
        for row in rows:
            if not isinstance(row, list) or len(row) != self.size:
                got = f"{len(row)} numbers" if isinstance(row, list) else json.dumps(row)[:40]
                raise BadRequest(f"{name}: a latent of this {self.model.kind} is a list of {self.size} numbers, got {got}")
            self._numbers(row, name, -MAX_ABS, MAX_ABS, self.size)
        return torch.tensor(rows, dtype=torch.float32)

    def _labels(self, labels, count: int) -> torch.Tensor | None:
        classes = len(self.class_names)
        if not classes:
            if labels is not None:
                raise BadRequest(f"labels are not allowed: this {self.model.kind} has no classes")
            return None
        if not isinstance(labels, list) or len(labels) != count:
            raise BadRequest(f"labels must be a list of {count} classes (0..{classes - 1}), one per latent")
        for label in labels:
            self._integer(label, "label", 0, classes - 1)
        return torch.tensor(labels)

    def _images(self, z: torch.Tensor, labels: torch.Tensor | None, seed_options: list[str] | None,
                steps: int | None) -> dict:
        """Decode at `steps` solver steps (None: a one-pass family), the model's own restored after."""
        with self.lock:
            start = time.perf_counter()
            if steps is not None:
                self.model.sample_steps = steps
            try:
                pictures = self.model.decode(z.view(-1, *self.shape), labels).cpu()
            finally:
                if steps is not None:
                    self.model.sample_steps = self.sample_steps
            ms = 1000 * (time.perf_counter() - start)
        rows = z.flatten(1).tolist()
        label0 = None if labels is None else int(labels[0])
        if seed_options is None:  # one latent, in the class of images[0]
            values = ",".join(_float32_text(v) for v in rows[0])
            seed_options = [f"latent=[{values}]", *([f"label={label0}"] if label0 is not None else [])]
        draft = steps != self.sample_steps
        options = [*seed_options, *([f"sample_steps={steps}"] if draft else [])]
        return {"images": [_b64png(p) for p in pictures], "latents": rows, "labels": None if labels is None else labels.tolist(),
                "ms": ms, "sample_steps": steps, "draft": draft, "command": self.command(options)}

    def command(self, options: list[str]) -> str:
        from genlab.config.overrides import hydra_value

        out = "explore_" + "_".join(o.split("=")[0] if o.startswith("latent") else o.replace("=", "") for o in options)
        words = ["genlab sample", shlex.quote(f"ckpt={hydra_value(str(self.ckpt))}"), "n=1",
                 *map(shlex.quote, options), f"out={out}.png"]
        return " ".join(words)


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's Explorer; every answer is JSON except the page."""

    server: ExploreServer
    timeout = 60  # seconds a connection may stall mid-request (an idle browser just reconnects)
    protocol_version = "HTTP/1.1"  # keep-alive: the page's requests reuse one connection
    # Headers and body go out in two writes; with Nagle's algorithm the body waits for the
    # browser's delayed ACK of the headers (40 ms here: 17 updates/s instead of 60+).
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # quiet: the terminal shows the URL only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _cross_origin(self) -> str | None:
        """The Origin of a request sent by a page other than the explorer's own (whose origin is
        http:// and the Host the request names), else None. Browsers send Origin with a page's
        POSTs and cross-origin fetches; curl and scripts send none."""
        origin = self.headers.get("Origin")
        return None if origin is None or origin == f"http://{self.headers.get('Host')}" else origin

    def _host_allowed(self) -> bool:
        """On a loopback address, only requests addressed to it (a page elsewhere that makes the
        browser resolve its own name to 127.0.0.1, DNS rebinding, names another host)."""
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1")

    def do_GET(self) -> None:
        self._route({"/": lambda _: PAGE.read_bytes(), "/api/info": lambda _: self.server.info})

    def do_POST(self) -> None:
        self._route({"/api/decode": self.server.explorer.decode, "/api/encode": self.server.explorer.encode})

    def _route(self, routes: dict) -> None:
        try:
            if not self._host_allowed():
                raise BadRequest("this server answers requests to 127.0.0.1 only", HTTPStatus.FORBIDDEN)
            origin = self._cross_origin()
            if origin is not None:  # another site open in the same browser must not drive the model
                raise BadRequest(f"a request from another site's page ({origin[:80]}) is refused: use the explorer's "
                                 f"own page, http://{self.headers.get('Host')}/", HTTPStatus.FORBIDDEN)
            path = self.path.split("?", 1)[0]
            if path not in routes:
                raise BadRequest(f"no route {self.command} {path[:80]}: the API is GET /, GET /api/info, "
                                 "POST /api/decode, POST /api/encode", HTTPStatus.NOT_FOUND)
            body = None
            if self.command == "POST":
                body = self._body()
            result = routes[path](body)
            if isinstance(result, bytes):
                self._send(HTTPStatus.OK, result, "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.OK, result)
        except BadRequest as e:
            self.close_connection = self.close_connection or e.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            self._json(e.status, {"error": str(e)})

    def _body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest("a POST needs a Content-Length", HTTPStatus.LENGTH_REQUIRED)
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            raise BadRequest(f"the body is {int(length):,} bytes, more than {MAX_BODY_BYTES:,}: send fewer latents",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw, parse_constant=lambda c: float(c))  # NaN/Infinity are refused as non-finite
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the body is not JSON ({str(e).splitlines()[0][:80]})") from None


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer: Explorer, host: str, port: int):
        import ipaddress

        super().__init__((host, port), Handler)
        self.explorer = explorer
        self.info = explorer.info()  # fixed for the checkpoint: made once
        try:
            self.loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback = host == "localhost"

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a browser that closed its tab is no error
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"
