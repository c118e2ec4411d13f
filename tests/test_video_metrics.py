"""Metrics of clips (genlab/metrics/video.py), the clip likelihood, and conditional prediction
(genlab/commands/prediction.py): each formula on a hand-computed case, then `genlab eval` and
`genlab sample context=K` on a tiny model of clips."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import genlab, needs_mnist
from PIL import Image
from test_video_vae import FRAMES, SIZE, model, tiny

from genlab.config.checks import ConfigError
from genlab.data.moving_mnist import MovingMNIST
from genlab.images import PADDING
from genlab.metrics import registry, video
from genlab.metrics.likelihood import nll_bounds
from genlab.models.vae import VAE
from genlab.commands.prediction import check_context, errors

torch.set_num_threads(1)


def square_clip(xs, ys, canvas=16, side=4) -> torch.Tensor:
    """A clip (1, T, canvas, canvas) of one side×side square of ink whose top-left corner is (xs[t], ys[t])."""
    clip = torch.zeros(1, len(xs), canvas, canvas)
    for t, (x, y) in enumerate(zip(xs, ys)):
        clip[0, t, y : y + side, x : x + side] = 1
    return clip


def test_the_ruler_reads_a_square_bouncing_off_a_wall_exactly():
    # A 4 px square moving 2 px right per frame on a 16 px canvas: its centre (corner + 2) reaches the
    # wall's limit 16 − 2 = 14 at corner 12, and comes back.
    xs = [2, 4, 6, 8, 10, 12, 10, 8, 6, 4]
    clip = square_clip(xs, [6] * len(xs))
    centres, owners = video.locate(clip, 1)
    assert torch.equal(centres[0, :, 0, 0], torch.tensor(xs, dtype=torch.float64) + 2)
    assert torch.equal(centres[0, :, 0, 1], torch.full((len(xs),), 8.0, dtype=torch.float64))
    assert torch.equal(video.speeds(centres), torch.full((len(xs) - 1,), 2.0, dtype=torch.float64))
    # One contact (frame 5: from 12 → 14, two frames after 10), reversed within REACT frames.
    assert video.motion_figures(centres, 4.0, (16, 16)) == {"mean_speed_px": 2.0, "contacts": 1, "bounce_share": 1.0}


def test_a_square_that_stops_at_the_wall_makes_an_unreversed_contact():
    xs = [2, 4, 6, 8, 10, 12, 12, 12, 12, 12]
    centres, _ = video.locate(square_clip(xs, [6] * len(xs)), 1)
    assert video.bounces(centres, 4.0, (16, 16)) == (1, 0)
    assert video.motion_figures(centres, 4.0, (16, 16))["mean_speed_px"] == pytest.approx(10 / 9)


def test_two_squares_are_located_and_tracked_through_their_frames():
    clip = square_clip([1, 3, 5], [1, 1, 1]) + square_clip([11, 9, 7], [11, 11, 11])
    centres, owners = video.locate(clip, 2)
    found = sorted(centres[0, 0].tolist())
    assert found == [[3.0, 3.0], [13.0, 13.0]]
    first = centres[0, 0, :, 0].argmin()           # the track that starts top-left stays that square
    assert centres[0, :, first].tolist() == [[3.0, 3.0], [5.0, 3.0], [7.0, 3.0]]
    assert (owners[0, 0, 1:5, 1:5] == first).all() and (owners[0, 0, 11:15, 11:15] != first).all()
    assert video.apart(centres, 4.0).all()         # 10·√2 px apart ≥ 20/28 · 4
    assert not video.apart(centres, 20.0).all()


def test_a_crop_is_the_box_around_its_centre_without_the_other_objects_ink():
    clip = square_clip([0], [0], side=2) + 0.5 * square_clip([4], [4], side=2)
    centres, owners = video.locate(clip, 2)
    cut = video.crops(clip, centres, owners, size=4.0, out=4)
    ink = cut[0, 0, :, 0].sum((-1, -2))
    assert sorted(ink.tolist()) == pytest.approx([2.0, 4.0])   # each crop holds its own square only


def test_persistence_and_kappa_by_hand():
    # Two clips of 4 frames, two objects each: clip 0 keeps {1, 7}; clip 1 reads {2, 3} then {2, 5}.
    classes = torch.tensor([[[1, 7], [7, 1], [1, 7], [7, 1]],
                            [[2, 3], [3, 2], [2, 5], [5, 2]]])
    read = torch.ones(2, 4, dtype=torch.bool)
    result = video.persistence(classes, read, 10)
    assert result["persistence"] == pytest.approx(6 / 8)            # 4 of 4, then 2 of 4 agree with the majority
    # P̄ = ((16 − 4)/12 + (8 − 4)/12)/2 = 2/3; p = (4, 2, 2)/8, P_e = 24/64; κ = (2/3 − 3/8)/(5/8) = 7/15
    assert result["kappa"] == pytest.approx(7 / 15) and result["read_share"] == 1.0
    # Frames not read do not count: without clip 1's last two frames both clips always agree.
    read[1, 2:] = False
    assert video.persistence(classes, read, 10)["persistence"] == 1.0
    # A blur named the same in every frame agrees perfectly and scores no κ.
    blur = video.persistence(torch.full((3, 4, 2), 8), torch.ones(3, 4, dtype=torch.bool), 10)
    assert blur["persistence"] == 1.0 and blur["kappa"] == 0.0


def test_an_identity_that_flips_lowers_persistence_and_shuffling_frames_does_too():
    steady = torch.tensor([[[0, 1]] * 6, [[2, 3]] * 6, [[4, 5]] * 6, [[6, 7]] * 6])
    read = torch.ones(4, 6, dtype=torch.bool)
    assert video.persistence(steady, read, 10) == {"persistence": 1.0, "kappa": 1.0, "read_share": 1.0}
    flipped = steady.clone()
    flipped[0, 4:] = torch.tensor([8, 9])
    assert video.persistence(flipped, read, 10)["persistence"] == pytest.approx(22 / 24)
    mixed = video.shuffled(steady, torch.Generator().manual_seed(0))
    assert torch.equal(mixed[:, 0], steady[:, 0])
    assert all(sorted(mixed[:, t, 0].tolist()) == [0, 2, 4, 6] for t in range(6))   # each frame a permutation
    assert video.persistence(mixed, read, 10)["kappa"] < 0.5


def test_wasserstein_1d_by_hand():
    assert video.wasserstein_1d(torch.tensor([0.0]), torch.tensor([1.0])) == 1.0
    assert video.wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.5])) == 0.5
    # [0, 2] against [1]: |F_a − F_b| is ½ on [0, 2] → 1
    assert video.wasserstein_1d(torch.tensor([0.0, 2.0]), torch.tensor([1.0])) == 1.0
    assert video.wasserstein_1d(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([2.0, 3.0, 1.0])) == 0.0


@needs_mnist
def test_the_ruler_reads_the_generators_own_motion_on_real_clips(data_root):
    dataset = {"root": str(data_root), "download": True, "split": "test", "frames": 12, "digits": 2,
               "image_size": 32, "seed": 0, "binarize": "none"}
    clips = MovingMNIST.load(dataset)
    index = torch.arange(60)
    exact = ((clips.corners(index).double() + 14) / 2).transpose(1, 2)  # the digits' boxes' centres, 32 px
    centres, _ = video.locate(clips.images(index)[:, :, 0].float() / 255, 2)
    # Every digit moves 0.1 of 36 px per frame at 64 px, rounded to whole pixels: 1.8 px at 32 px.
    assert float(video.speeds(exact).mean()) == pytest.approx(1.8, abs=0.1)
    assert float(video.speeds(centres).mean()) == pytest.approx(float(video.speeds(exact).mean()), abs=0.1)
    objects = MovingMNIST.objects(dataset)
    assert objects.count == 2 and objects.size_px == 14 and objects.classes["name"] == "mnist"
    assert video.motion_figures(exact, objects.size_px, (32, 32))["bounce_share"] > 0.95


def test_copy_baseline_mse_and_bce_by_hand():
    truth = torch.tensor([0, 255, 255, 0], dtype=torch.uint8).view(1, 4, 1, 1, 1).expand(1, 4, 1, 1, 2).clone()
    predicted = torch.full((1, 2, 1, 1, 2), 0.5)
    result = errors(predicted, truth, 2, bernoulli=True)
    assert result["copy_mse"] == [0.0, 1.0]            # the last seen frame (255) against 255, then 0
    assert result["mse"] == [0.25, 0.25]
    assert result["bce_nats"] == pytest.approx([math.log(2)] * 2)
    assert "bce_nats" not in errors(predicted, truth, 2, bernoulli=False)


def test_bad_contexts_are_refused_in_one_line():
    vae = model()
    for bad in (0, FRAMES, True, 2.5):
        with pytest.raises(ConfigError, match=f"^context={bad!r} is not allowed: the checkpoint's clips have {FRAMES} "
                                              f"frames, so give 1 to {FRAMES - 1} frames"):
            check_context(vae, bad)
    image_model = VAE.__new__(VAE)
    image_model.clips = False
    with pytest.raises(ConfigError, match="^context=3 needs a checkpoint of a model of clips, but it holds a VAE"):
        check_context(image_model, 3)


def test_continue_clips_follows_the_context_and_its_seed():
    vae = model()
    vae.train(False)
    clips = torch.rand(2, FRAMES, 1, SIZE, SIZE)
    first = vae.continue_clips(clips[:, :2], torch.Generator().manual_seed(0))
    assert first.shape == (2, FRAMES - 2, 1, SIZE, SIZE) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, vae.continue_clips(clips[:, :2], torch.Generator().manual_seed(0)))
    assert not torch.equal(first, vae.continue_clips(clips[:, :2], torch.Generator().manual_seed(1)))
    assert not torch.equal(first, vae.continue_clips(1 - clips[:, :2], torch.Generator().manual_seed(0)))


def test_the_clip_likelihood_uses_the_learned_motion_prior():
    vae = model()
    vae.train(False)
    z = torch.randn(3, vae.latent_size)
    static, motion = z[:, :4], z[:, 4:].view(3, FRAMES, 2)
    previous = torch.cat([torch.zeros(3, 1, 2), motion[:, :-1]], 1)
    mean, logvar = vae.prior_net(previous)[0].chunk(2, -1)
    expected = torch.distributions.Normal(0, 1).log_prob(static).sum(1) \
        + torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(motion).flatten(1).sum(1)
    with torch.no_grad():
        assert torch.allclose(vae.log_prior(z), expected, atol=1e-4)
    clips = torch.rand(4, FRAMES, 1, SIZE, SIZE).round()
    bounds = nll_bounds(vae, clips, 8, torch.Generator().manual_seed(0), 32)
    # An untrained decoder: ≈ log 2 per pixel, plus the KL; IWAE never above the ELBO's bound.
    assert FRAMES * SIZE * SIZE * math.log(2) * 0.9 < bounds["iwae_nll_nats"] <= bounds["neg_elbo_nats"]


def test_metrics_of_clips_fit_models_of_clips_only():
    from genlab.data.mnist import MNIST
    from genlab.models.video_vae import VideoVAE

    assert registry.applicable(VideoVAE, MovingMNIST) == ["nll", "frame_fid", "identity", "motion"]
    assert registry.applicable(VAE, MNIST) == ["nll", "fid", "kid", "pr"]
    with pytest.raises(Exception, match="^metric fid does not fit the checkpoint's VideoVAE .*fits nll, frame_fid, identity, motion"):
        registry.check_fits(["fid"], VideoVAE, MovingMNIST, "moving_mnist")
    with pytest.raises(Exception, match="^metric motion does not fit the checkpoint's VAE"):
        registry.check_fits(["motion"], VAE, MNIST, "mnist")


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory, data_root):
    """A tiny video_vae run (2 steps): its folder."""
    folder = tmp_path_factory.mktemp("clips")
    result = genlab("train", *tiny(data_root), "trainer.max_steps=2", "hydra.run.dir=run", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@needs_mnist
def test_eval_runs_the_clip_metrics(clip_run):
    result = genlab("eval", "ckpt=run", "n=10", "k=2", "batch_size=10", "classifier.steps=20", "classifier.batch_size=16",
                    f"cache_dir={clip_run / 'cache'}", "hardware=cpu", "hardware.threads=1", cwd=clip_run)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((clip_run / "run" / "checkpoints" / "eval.json").read_text())
    assert list(report["metrics"]) == ["nll", "frame_fid", "identity", "motion"]
    nll = report["metrics"]["nll"]
    assert nll["frames"] == FRAMES and nll["neg_elbo_nats_per_frame"] == pytest.approx(nll["neg_elbo_nats"] / FRAMES)
    assert nll["iwae_nll_nats_per_frame"] <= nll["neg_elbo_nats_per_frame"]
    identity = report["metrics"]["identity"]
    assert 0 <= identity["persistence"] <= 1 and identity["read_share_test"] > 0
    motion = report["metrics"]["motion"]
    assert motion["mean_speed_px_test"] == pytest.approx(0.9, abs=0.25)   # 1.8 px at 32 px is 0.9 at 16
    for row in ("neg. ELBO (nats/frame)", "frame FID", "identity persistence", "bounce share"):
        assert row in result.stdout


@needs_mnist
def test_sample_with_context_continues_test_clips_beside_the_truth(clip_run):
    result = genlab("sample", "ckpt=run", "context=2", "n=3", cwd=clip_run)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "prediction after 2 frames, n=3 test clips (per pixel, pixels in [0, 1])"
    assert lines[1].split() == ["frame", "MSE", "copy-last", "MSE", "BCE", "nats/pixel"]
    assert [line.split()[0] for line in lines[2 : 2 + FRAMES - 2]] == [str(t) for t in range(3, FRAMES + 1)]
    gif_path, png_path = clip_run / lines[-2], clip_run / lines[-1]
    assert png_path.name == "predict_context2_n3_seed0.png" and gif_path.suffix == ".gif"
    strip = Image.open(png_path)
    assert strip.size == (FRAMES * (SIZE + PADDING) + PADDING, 6 * (SIZE + PADDING) + PADDING)  # truth over prediction
    assert Image.open(gif_path).n_frames == FRAMES


@needs_mnist
@pytest.mark.parametrize("args, message", [
    (["context=0"], f"context=0 is not allowed: the checkpoint's clips have {FRAMES} frames, so give 1 to {FRAMES - 1}"),
    ([f"context={FRAMES}"], f"context={FRAMES} is not allowed"),
    (["context=2", "mode=interpolate"], "context= continues test clips, which mode=, label= and latent= do not apply to"),
    (["context=2", "out=x.npz"], "out=x.npz is not allowed with context=: name it *.png"),
])
def test_bad_prediction_requests_fail_in_one_line_and_write_nothing(clip_run, args, message):
    before = sorted(clip_run.rglob("*"))
    result = genlab("sample", "ckpt=run", *args, cwd=clip_run)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and sorted(clip_run.rglob("*")) == before


def test_context_on_a_model_of_still_images_is_refused(tiny_run):
    result = genlab("sample", f"ckpt={tiny_run}", "context=3", cwd=tiny_run.parent)
    assert result.returncode != 0 and "context=3 needs a checkpoint of a model of clips" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
