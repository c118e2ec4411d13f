"""Metrics of clips: frame FID, identity persistence and motion, read by one ruler of the objects in a frame.

The dataset says what its frames show (`Dataset.objects`, genlab/data/base.py): `count` objects per
frame, each in a square box of `size` px centred on its centre of mass, and a still-image dataset of
such objects whose classifier names them (genlab/metrics/classifier.py, the recipe of `classifier`).
Pixel (i, j) sits at (j + ½, i + ½) px, x to the right, y down; a frame is ink w(p) in [0, 1].

The ruler (`locate`), one frame after the other: the `count` centres of mass of a weighted k-means
(Lloyd 1982) of the frame's pixels,

    assign every pixel p to its nearest centre;   c_k ← Σ_{p→k} w(p)·p / Σ_{p→k} w(p)      (ITERATIONS times)

started at frame 0 from the farthest-point seeds (the ink pixel, w ≥ ½ max w, farthest from the
frame's centre of mass, then each next one farthest from those chosen), and at frame t > 0 from the
constant-velocity guess c_{t−1} + (c_{t−1} − c_{t−2}), so object k stays object k from frame to frame
(a track); a centre whose pixels hold no ink stays at its guess. Overlapping objects are one blob
that the ruler splits: the reference rows (the same ruler on real clips) show what that costs.

Frame FID (`frame_fid`): the Fréchet distance (genlab/metrics/frechet.py) between the classifier's
features of the n·T frames of n generated clips and of the first n test clips, every frame resized
(bilinear, antialiased) to the classifier's image size; noise floor: the first n train clips' frames.

Identity persistence (`identity`): every frame is read on its own (the ruler with farthest-point
seeds in each frame, no tracks: a name needs no track, and a bad guess carried over from frames of
another clip must not change how a frame is split); object k of frame t is cut out, its box of `size` px centred on
c_k with the pixels assigned to the other centres set to 0, resized to the classifier's image size,
and named ŷ_{t,k}. A frame's identity is the multiset {ŷ_{t,1} … ŷ_{t,count}} (no tracking needed).
Only frames whose objects the ruler finds apart are read: every two centres at least SEPARATION·size
apart (20 of 28 px: MNIST's digits fill 20 px of their 28, so apart they do not touch); touching digits cut apart by the
ruler's straight line are often misnamed (docs/video.md measures how often). With n_ij the read frames of clip i whose identity is j, and m_i = Σ_j n_ij:

    persistence = Σ_i max_j n_ij / Σ_i m_i          (the share of read frames that agree with their
                                                     clip's most frequent identity; 1: always the same)
    κ = (P̄ − P_e) / (1 − P_e),   P̄ = mean_i (Σ_j n_ij² − m_i) / (m_i (m_i − 1))   (clips with m_i ≥ 2)
                                  P_e = Σ_j p_j²,   p_j = Σ_i n_ij / Σ_i m_i

κ is Fleiss' kappa (Fleiss 1971, "Measuring nominal scale agreement among many raters"; the frames
of a clip are its raters): the agreement between two frames of a clip beyond what two frames of
different clips share by chance (0 when P_e = 1, every frame one identity). persistence alone is
passed by a blur: the classifier names a blob the same digit in every frame (docs/video.md: a
partly trained model's blobs), which κ scores near 0. Both are given for the generated
clips, for the real test clips (the reference) and for frame-shuffled test clips: frame t of clip i
is frame t of test clip π_t(i), one seeded permutation per frame (π_0 the identity), whose frames
are each real but whose objects change every frame: what a model scores that renders good frames
but forgets who is in them. `read_share` is the share of frames read.

Motion (`motion`): per track, speed_t = ‖c_{t+1} − c_t‖ px per frame (n·(T−1)·count values), and

    mean speed;   W₁ = ∫ |F_gen(v) − F_real(v)| dv   (the 1-D Wasserstein distance between the empirical
                                                      speed distributions of generated and test clips)
    bounce share = reversed contacts / contacts

A centre can come no nearer a wall than size/2 (its box stops at the edge), so along each axis the
distance to a wall is d_t = c_t − size/2 or (S − size/2) − c_t, negative past it. A contact is a frame
2 ≤ t ≤ T − 1 − REACT at which a track arrives at a wall, coming from beyond a margin and moving at it:

    d_{t−1} > margin ≥ d_t   and   d_{t−2} − d_t ≥ approach          (margin = approach = size/14 px)

and it is reversed when within REACT frames the track moves off the nearest it came to the wall:

    max_{t < u ≤ t+REACT} (d_u − min_{t ≤ v ≤ u} d_v) ≥ leave        (leave = size/28 px)

(at a 28 px digit on the 64 px canvas: margin 2 px, approach 2 px in two frames, leave 1 px; the
approach leaves out grazing contacts, whose digits dwell at the wall longer than REACT frames in the
data's own rounding; docs/video.md reads the generator's exact trajectories with it). A digit that stops at
the wall, or runs into or through it, makes unreversed contacts. W₁'s noise floor: the
first n train clips against the test clips; the mean speed and bounce share of the test clips are
the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ITERATIONS = 10          # Lloyd iterations per frame
INK = 0.5                # seeds are pixels with at least this share of the frame's brightest ink
MARGIN = APPROACH = 1 / 14  # a wall's zone, and the approach of a contact over two frames, in object sizes
LEAVE = 1 / 28           # how far off a wall a bounce moves, in object sizes (1 px of a 28 px digit at 64 px)
REACT = 4                # frames after a contact within which a bounce must show
SEPARATION = 20 / 28     # centres at least this many object sizes apart: the objects are read


# -- the ruler ----------------------------------------------------------------------------------

def _pixels(height: int, width: int) -> torch.Tensor:
    """(H·W, 2) pixel centres (x, y) in px."""
    y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], -1).double()


def _seeds(ink: torch.Tensor, points: torch.Tensor, count: int) -> torch.Tensor:
    """Farthest-point seeds (N, count, 2) among the ink pixels of frames `ink` (N, P)."""
    mass = ink.sum(1, keepdim=True)
    centre = torch.where(mass > 0, ink @ points / mass.clamp(min=1e-12), points.mean(0))  # (N, 2)
    eligible = ink >= INK * ink.amax(1, keepdim=True)
    eligible &= (ink > 0) | ~(ink > 0).any(1, keepdim=True)   # a blank frame: every pixel
    nearest = (points[None] - centre[:, None]).square().sum(-1)  # distance² to the chosen set (N, P)
    seeds = []
    for _ in range(count):
        pick = nearest.masked_fill(~eligible, -1).argmax(1)
        seeds.append(points[pick])
        nearest = torch.minimum(nearest, (points[None] - seeds[-1][:, None]).square().sum(-1))
    return torch.stack(seeds, 1)


def _lloyd(ink: torch.Tensor, points: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted k-means from `centres` (N, K, 2): the final centres and each pixel's centre (N, P)."""
    for _ in range(ITERATIONS):
        owner = (points[None, :, None] - centres[:, None]).square().sum(-1).argmin(-1)  # (N, P)
        weights = F.one_hot(owner, centres.shape[1]).double() * ink[..., None]           # (N, P, K)
        mass = weights.sum(1)[..., None]                                                  # (N, K, 1)
        centres = torch.where(mass > 0, weights.transpose(1, 2) @ points / mass.clamp(min=1e-12), centres)
    owner = (points[None, :, None] - centres[:, None]).square().sum(-1).argmin(-1)
    return centres, owner


def locate(frames: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ruler (see the module docstring) on clips (N, T, H, W) in [0, 1]: tracks of centres
    (N, T, count, 2) in px, (x, y), and which track owns each pixel (N, T, H, W)."""
    n, frames_, height, width = frames.shape
    points = _pixels(height, width)
    ink = frames.double().flatten(2)
    centres, owners = [], []
    for t in range(frames_):
        if t == 0:
            guess = _seeds(ink[:, 0], points, count)
        else:
            guess = centres[-1] + (centres[-1] - centres[-2] if t > 1 else 0)
        c, owner = _lloyd(ink[:, t], points, guess)
        centres.append(c)
        owners.append(owner.view(n, height, width))
    return torch.stack(centres, 1), torch.stack(owners, 1)


def crops(frames: torch.Tensor, centres: torch.Tensor, owners: torch.Tensor, size: float, out: int) -> torch.Tensor:
    """Each object cut out (N, T, count, 1, out, out): its box of `size` px centred on its centre,
    the pixels the ruler gave another object set to 0, resized (bilinear) to out × out px."""
    n, t, height, width = frames.shape
    count = centres.shape[2]
    own = owners[:, :, None] == torch.arange(count).view(1, 1, count, 1, 1)          # (N, T, K, H, W)
    alone = (frames[:, :, None] * own).flatten(0, 2)[:, None].float()               # (N·T·K, 1, H, W)
    c = centres.flatten(0, 2).float()
    theta = torch.zeros(len(c), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = size / width, size / height
    theta[:, 0, 2], theta[:, 1, 2] = 2 * c[:, 0] / width - 1, 2 * c[:, 1] / height - 1
    grid = F.affine_grid(theta, [len(c), 1, out, out], align_corners=False)
    return F.grid_sample(alone, grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(n, t, count, 1, out, out)


def resize(frames: torch.Tensor, out: int) -> torch.Tensor:
    """Frames (N, 1, H, W) at out × out px (bilinear, antialiased when shrinking)."""
    if frames.shape[-1] == out:
        return frames
    return F.interpolate(frames.float(), size=(out, out), mode="bilinear", antialias=True, align_corners=False)


# -- the figures --------------------------------------------------------------------------------

def apart(centres: torch.Tensor, size: float) -> torch.Tensor:
    """Whether every two of a frame's centres (N, T, count, 2) are at least SEPARATION·size apart (N, T)."""
    distance = torch.cdist(centres.double(), centres.double())
    distance = distance + torch.eye(centres.shape[2], dtype=torch.float64) * SEPARATION * size  # not to itself
    return (distance >= SEPARATION * size).flatten(2).all(-1)


def persistence(classes: torch.Tensor, read: torch.Tensor, num_classes: int) -> dict[str, float]:
    """persistence, κ and read_share (see the module docstring) of the objects named (N, T, count) in
    the frames `read` (N, T)."""
    ordered = classes.sort(-1).values
    identity = (ordered * num_classes ** torch.arange(classes.shape[-1])).sum(-1)      # one code per multiset
    counts = (F.one_hot(identity, num_classes ** classes.shape[-1]) * read[..., None]).sum(1).double()  # n_ij
    m = counts.sum(1)
    used = m >= 2
    pairs = ((counts.square().sum(1) - m) / (m * (m - 1)).clamp(min=1))[used].mean()
    p = counts[used].sum(0) / m[used].sum()
    chance = p.square().sum()
    return {"persistence": float(counts.amax(1).sum() / m.sum()),
            "kappa": float((pairs - chance) / (1 - chance)) if chance < 1 else 0.0,
            "read_share": float(read.double().mean())}


def speeds(centres: torch.Tensor) -> torch.Tensor:
    """‖c_{t+1} − c_t‖ px per frame of every track, flat (N·(T−1)·count,)."""
    return (centres[:, 1:] - centres[:, :-1]).norm(dim=-1).flatten()


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """W₁ = ∫ |F_a − F_b| between the empirical distributions of samples a and b."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a, points[:-1], right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, points[:-1], right=True).double() / len(b)
    return float(((cdf_a - cdf_b).abs() * points.diff()).sum())


def bounces(centres: torch.Tensor, size: float, canvas: tuple[int, int]) -> tuple[int, int]:
    """(contacts, reversed contacts) of tracks (N, T, count, 2) on a canvas (width, height) px, for
    objects of `size` px (see the module docstring)."""
    limits = torch.tensor(canvas, dtype=torch.float64) - size / 2
    c = centres.double().movedim(1, -1)                               # (N, count, 2, T)
    contacts = reversed_ = 0
    for d in (c - size / 2, limits[:, None] - c):                     # each axis's low wall, then its high wall
        for t in range(2, d.shape[-1] - REACT):
            contact = (d[..., t - 1] > MARGIN * size) & (d[..., t] <= MARGIN * size) \
                & (d[..., t - 2] - d[..., t] >= APPROACH * size)
            window = d[..., t : t + REACT + 1]
            moved_off = (window - window.cummin(-1).values).amax(-1) >= LEAVE * size
            contacts += int(contact.sum())
            reversed_ += int((contact & moved_off).sum())
    return contacts, reversed_


def motion_figures(centres: torch.Tensor, size: float, canvas: tuple[int, int]) -> dict:
    contacts, reversed_ = bounces(centres, size, canvas)
    return {"mean_speed_px": float(speeds(centres).mean()), "contacts": contacts,
            "bounce_share": reversed_ / contacts if contacts else None}


def shuffled(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frame t of clip i replaced by frame t of clip π_t(i), a random permutation per frame t > 0."""
    n, frames_ = clips.shape[:2]
    order = torch.stack([torch.arange(n)] + [torch.randperm(n, generator=generator) for _ in range(frames_ - 1)], 1)
    return clips[order, torch.arange(frames_)]


# -- the registry's entries (genlab/metrics/registry.py) ----------------------------------------

class Clips:
    """The clips and the classifier an evaluation's clip metrics share, each computed once."""

    def __init__(self, run):
        from genlab.data import dataset_class

        self.run = run
        self.objects = dataset_class(run.dataset).objects(run.dataset)
        self._cache: dict = {}

    def _once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def frames(self, which: str) -> torch.Tensor:
        """The n 'generated', 'test' or 'train' clips as float (N, T, H, W) in [0, 1] (one channel)."""
        def make():
            clips = self.run.generated() if which == "generated" else self.run.real_images(which)
            return clips[:, :, 0].float().div(255)
        return self._once(("frames", which), make)

    def tracks(self, which: str):
        return self._once(("tracks", which), lambda: locate(self.frames(which), self.objects.count))

    def identity(self, frames: torch.Tensor) -> dict[str, float]:
        """persistence, κ and read_share of clips (N, T, H, W), every frame read on its own."""
        from genlab.metrics.classifier import predict

        n, t = frames.shape[:2]
        alone = frames.flatten(0, 1)[:, None]                        # N·T clips of one frame
        centres, owners = locate(alone, self.objects.count)
        cut = crops(alone, centres, owners, self.objects.size_px, self.objects.classes["image_size"])
        _, classes = predict(self.classifier()[0], cut.flatten(0, 2), self.run.batch_size)
        return persistence(classes.view(n, t, -1), apart(centres, self.objects.size_px).view(n, t),
                           self.classifier()[0].head.out_features)

    def classifier(self):
        from genlab.metrics.classifier import load_or_train

        settings = self.run.settings
        return self._once("classifier", lambda: load_or_train(self.objects.classes, settings["classifier"],
                                                               self.run.device, settings["cache_dir"]))

    def classifier_note(self) -> dict:
        report = self.classifier()[1]
        return {"path": report["path"], "dataset": self.objects.classes["name"],
                "test_accuracy": report["test_accuracy"]["overall"]}

    def features(self, which: str) -> torch.Tensor:
        from genlab.metrics.classifier import predict

        def make():
            frames = self.frames(which).flatten(0, 1)[:, None]
            size = self.objects.classes["image_size"]
            return torch.cat([predict(self.classifier()[0], resize(part, size), self.run.batch_size)[0]
                              for part in frames.split(self.run.batch_size)])
        return self._once(("features", which), make)


def clips_of(run) -> Clips:
    """The evaluation's Clips, made by the first clip metric that asks."""
    if "clips" not in run.shared:
        run.shared["clips"] = Clips(run)
    return run.shared["clips"]


def frame_fid(run) -> dict:
    from genlab.metrics.frechet import fid

    clips = clips_of(run)
    test = clips.features("test")
    return {"frame_fid": fid(test, clips.features("generated")), "noise_floor": fid(test, clips.features("train")),
            "n": run.n, "frames": len(test), "seed": run.settings["seed"], "classifier": clips.classifier_note(),
            **run.generation}


def identity(run) -> dict:
    clips = clips_of(run)
    real = clips.frames("test")
    mixed = shuffled(real, torch.Generator().manual_seed(run.settings["seed"]))
    figures = {which: clips.identity(clips.frames(which)) for which in ("generated", "test")}
    figures["shuffled"] = clips.identity(mixed)
    return {**figures["generated"], **{f"{key}_{which}": value for which in ("test", "shuffled")
                                        for key, value in figures[which].items()},
            "objects": clips.objects.count, "n": run.n, "seed": run.settings["seed"],
            "classifier": clips.classifier_note()}


def motion(run) -> dict:
    clips = clips_of(run)
    size, canvas = clips.objects.size_px, tuple(clips.frames("test").shape[-1:-3:-1])
    centres = {which: clips.tracks(which)[0] for which in ("generated", "test", "train")}
    test_speeds = speeds(centres["test"])
    generated, test = (motion_figures(centres[which], size, canvas) for which in ("generated", "test"))
    return {"mean_speed_px": generated["mean_speed_px"], "mean_speed_px_test": test["mean_speed_px"],
            "speed_w1_px": wasserstein_1d(speeds(centres["generated"]), test_speeds),
            "noise_floor": wasserstein_1d(speeds(centres["train"]), test_speeds),
            "bounce_share": generated["bounce_share"], "bounce_share_test": test["bounce_share"],
            "contacts": generated["contacts"], "contacts_test": test["contacts"],
            "object_size_px": size, "n": run.n, "seed": run.settings["seed"]}

