"""Does an unconditional GAN checkpoint's D tell real from generated images, and does its BatchNorm on separate batches stop it?

For each checkpoint: D's mean score (logit) on 4 × (64 real training images, 64 samples of the trained G),
with batch statistics on separate batches (as training feeds D), on one joint batch of 128, and with
the running statistics (eval mode); the size of D's activations layer by layer on one such pair.
Then D, its weights and Adam state restored, trained `--steps` more steps against the frozen G, once
with separate batches and once with joint ones: the non-saturating D loss every 50 steps. ln 4 = 1.386 is chance; a D that can learn falls well below it.

    PYTHONPATH=. python benchmarks/gan_d_batchnorm.py <run>/checkpoints/step_0011718.pt [more.pt] [--steps 300]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genlab.metrics.splits import split_data
from genlab.models import model_from_checkpoint
from genlab.training.checkpoint import load_checkpoint

BATCH = 64


def draw(model, images, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(BATCH real training images, BATCH samples of the trained G in training mode), both in [−1, 1]."""
    index = torch.randint(len(images), (BATCH,), generator=generator)
    real = images[index].float().div(255) * 2 - 1
    model.generator.train()
    with torch.no_grad():
        fake = model.generator(model.prior(BATCH, generator))
    return real, fake


def scores(discriminator, real, fake, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    discriminator.train(mode != "running statistics")
    if mode == "joint batch":
        joint = discriminator(torch.cat([real, fake]))[0]
        return joint[:BATCH], joint[BATCH:]
    return discriminator(real)[0], discriminator(fake)[0]


@torch.no_grad()
def activation_norms(discriminator, x: torch.Tensor) -> list[float]:
    """Mean L2 norm per image of D's activations after each of its LeakyReLUs, in forward order (training mode)."""
    norms = []

    def record(_module, _inputs, out: torch.Tensor) -> None:
        norms.append(out.flatten(1).norm(dim=1).mean().item())

    hooks = [m.register_forward_hook(record) for m in discriminator.modules() if isinstance(m, torch.nn.LeakyReLU)]
    discriminator.train()
    discriminator(x)
    for hook in hooks:
        hook.remove()
    return norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        state = load_checkpoint(path)
        images = split_data(state["config"]["dataset"], "train").images(torch.arange(10_000))
        print(f"{path} (step {state['step']}): D's mean score, real / generated")
        model = model_from_checkpoint(state, torch.device("cpu"))
        for mode in ("separate batches", "joint batch", "running statistics"):
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                pairs = [scores(model.discriminator, *draw(model, images, generator), mode) for _ in range(4)]
            real, fake = (torch.stack([p[i].mean() for p in pairs]).mean().item() for i in (0, 1))
            print(f"  {mode:<20} {real:6.2f} / {fake:6.2f}")
        real, fake = draw(model, images, torch.Generator().manual_seed(0))
        print("  D's activation norms after each LeakyReLU (mean ‖h‖ per image), real / generated: "
              + "; ".join(f"{r:.2f} / {f:.2f}" for r, f in zip(activation_norms(model.discriminator, real),
                                                               activation_norms(model.discriminator, fake))))
        print(f"  D trained {args.steps} steps against the frozen G (d_loss every 50 steps):")
        for mode in ("separate batches", "joint batch"):
            model = model_from_checkpoint(state, torch.device("cpu"))
            optimizer = model.d_optimizer
            optimizer.load_state_dict(state["model"]["d_optimizer"])
            generator, losses = torch.Generator().manual_seed(1), []
            for step in range(args.steps + 1):
                real_score, fake_score = scores(model.discriminator, *draw(model, images, generator), mode)
                loss = (F.softplus(-real_score) + F.softplus(fake_score)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if step % 50 == 0:
                    losses.append(f"{loss.item():.3f}")
            print(f"  {mode:<20} " + " → ".join(losses))


if __name__ == "__main__":
    main()
