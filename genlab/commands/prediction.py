"""Conditional prediction, `genlab sample ckpt=… context=K`: a model of clips continues test clips.

The first n clips of the checkpoint's test split are cut after frame K; the model continues each
(`continue_clips`, genlab/models/base.py; its random draws from `seed`) to the clip's T frames. Per
predicted frame t = K+1 … T, over the n clips and every pixel (x in [0, 1], 8-bit test frames):

    MSE_t      = mean (x̂_t − x_t)²                                  (the model's frame x̂_t)
    copy MSE_t = mean (x_K − x_t)²                                  (the baseline: the last seen frame, held)
    BCE_t      = −mean [x_t log x̂_t + (1 − x_t) log(1 − x̂_t)]      nats per pixel, where the model's
                 likelihood is a Bernoulli whose means are x̂_t (log clamped at −100, as torch's
                 binary_cross_entropy): log p(x_t | its latents) of one draw of the continuation

(Moving-MNIST papers report per-frame MSE or BCE of 10 predicted frames after 10 seen, e.g.
Srivastava et al. 2015; copying the last frame is the baseline a predictor must beat.) The table is
printed; the picture (the first PICTURE_CLIPS clips) is a film strip with two rows per clip, the
test clip over the K seen frames followed by the prediction, and an animated GIF beside it in which
each clip plays next to its truth.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.config.checks import ConfigError

PICTURE_CLIPS = 16  # clips drawn (each with its truth); the errors use all n


def check_context(model, context) -> None:
    """ConfigError unless `context` is a number of frames the model can continue from."""
    if not model.clips:
        raise ConfigError(f"context={context} needs a checkpoint of a model of clips, but it holds a {model.kind}, "
                          "which makes still images: drop context=")
    frames = model.image_shape[0]
    if not isinstance(context, int) or isinstance(context, bool) or not 1 <= context < frames:
        raise ConfigError(f"context={context!r} is not allowed: the checkpoint's clips have {frames} frames, "
                          f"so give 1 to {frames - 1} frames to continue from, e.g. context={frames // 2}")


@torch.no_grad()
def predict(model, clips: torch.Tensor, context: int, generator: torch.Generator, batch_size: int) -> torch.Tensor:
    """The model's continuation (N, T − K, C, H, W) in [0, 1] of uint8 clips (N, T, C, H, W) after K = context frames."""
    return torch.cat([model.continue_clips(part[:, :context].float().div(255), generator).float().cpu()
                      for part in clips.split(batch_size)])


def errors(predicted: torch.Tensor, truth: torch.Tensor, context: int, bernoulli: bool) -> dict[str, list[float]]:
    """Per predicted frame (the formulas above): mse, copy_mse and, for a Bernoulli model, bce_nats;
    predicted (N, T − K, …) in [0, 1], truth (N, T, …) uint8."""
    truth = truth.float().div(255)
    future, last = truth[:, context:], truth[:, context - 1 : context]
    per_frame = lambda e: e.transpose(0, 1).flatten(1).mean(1).tolist()  # noqa: E731
    result = {"mse": per_frame((predicted - future).square()), "copy_mse": per_frame((last - future).square())}
    if bernoulli:
        result["bce_nats"] = per_frame(F.binary_cross_entropy(predicted, future, reduction="none"))
    return result


def table(result: dict[str, list[float]], context: int, n: int) -> str:
    """The per-frame errors as lines of text, with their means over the predicted frames."""
    columns = [key for key in ("mse", "copy_mse", "bce_nats") if key in result]
    names = {"mse": "MSE", "copy_mse": "copy-last MSE", "bce_nats": "BCE nats/pixel"}
    lines = [f"prediction after {context} frames, n={n} test clips (per pixel, pixels in [0, 1])",
             f"{'frame':>7}" + "".join(f"{names[c]:>16}" for c in columns)]
    for i in range(len(result["mse"])):
        lines.append(f"{context + i + 1:>7}" + "".join(f"{result[c][i]:>16.5f}" for c in columns))
    lines.append(f"{'mean':>7}" + "".join(f"{sum(result[c]) / len(result[c]):>16.5f}" for c in columns))
    return "\n".join(lines)


def sample_prediction(ckpt: Path, model, n: int, seed: int, out: str | None, context: int, batch_size: int | None) -> Path:
    """What `genlab sample context=K` writes and prints (see the module docstring); returns the PNG's path."""
    from genlab import images
    from genlab.metrics.splits import split_data
    from genlab.commands.sample import write
    from genlab.training.checkpoint import load_checkpoint, run_dir_of

    check_context(model, context)
    out_path = Path(out) if out else run_dir_of(ckpt) / "samples" / f"predict_context{context}_n{n}_seed{seed}.png"
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"out={out} is not allowed with context=: name it *.png (a film strip, and a GIF beside it)")
    test = split_data(load_checkpoint(ckpt)["config"]["dataset"], "test")
    if n > test.num_images:
        raise ConfigError(f"n={n} exceeds the {test.num_images:,} test clips: pass n<={test.num_images}")
    truth = test.images(torch.arange(n)).cpu()
    predicted = predict(model, truth, context, torch.Generator().manual_seed(seed), batch_size or n)
    print(table(errors(predicted, truth, context, model.likelihood == "bernoulli"), context, n))
    shown = min(n, PICTURE_CLIPS)
    real = truth[:shown].float().div(255)
    pairs = torch.stack([real, torch.cat([real[:, :context], predicted[:shown]], 1)], 1).flatten(0, 1)
    gif_path = out_path.with_suffix(".gif")
    write(gif_path, lambda path: images.write_gif(images.clip_grids(pairs, 2 * math.ceil(math.sqrt(shown))), path))
    print(gif_path)
    picture = images.film_strip(pairs)
    write(out_path, lambda path: images.write_png(picture, path))
    return out_path
