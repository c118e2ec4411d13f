"""Which latent of a video_vae checkpoint carries what (genlab/models/video_vae.py).

At the posterior means of the first N test clips: the reconstruction's mean |error| per pixel, and
how much the decoded frames change (mean |Δ| per pixel) when the static latent s, or the motion
latents z_1…z_T, are taken from the next clip instead; the motion KL per frame,
KL(q(z_t|x_≤t) ‖ p(z_t|z_<t)) at z_<t = the posterior means, and the static KL per clip, in nats.
A model whose digits live in s changes its digits, not their paths, when s is swapped.

    PYTHONPATH=. python benchmarks/video_latents.py <checkpoint> [N]
"""

from __future__ import annotations

import sys

import torch

from genlab.metrics.splits import split_data
from genlab.models import model_from_checkpoint
from genlab.models.vae import gaussian_kl
from genlab.models.video_vae import gaussian_kl_between
from genlab.training.checkpoint import load_checkpoint


@torch.no_grad()
def main(ckpt: str, clips: int) -> None:
    torch.set_num_threads(1)
    state = load_checkpoint(ckpt)
    model = model_from_checkpoint(state, torch.device("cpu"))
    x = split_data(state["config"]["dataset"], "test").images(torch.arange(clips)).float().div(255)
    static, dynamic = model.encoder(x)
    (mu_s, logvar_s), (mu_z, logvar_z) = static.chunk(2, -1), dynamic.chunk(2, -1)
    frames = lambda s, z: torch.sigmoid(model.render(s, z))  # noqa: E731
    own, other = frames(mu_s, mu_z), torch.roll(torch.arange(clips), 1)
    print(f"step {state['step']}, {clips} test clips; mean |Δ| per pixel:")
    print(f"  reconstruction error {(own - x).abs().mean():.4f}")
    print(f"  s from the next clip {(frames(mu_s[other], mu_z) - own).abs().mean():.4f}")
    print(f"  z from the next clip {(frames(mu_s, mu_z[other]) - own).abs().mean():.4f}")
    previous = torch.cat([mu_z.new_zeros(clips, 1, model.dynamic_dim), mu_z[:, :-1]], 1)
    prior_mean, prior_logvar = model.prior_net(previous)[0].chunk(2, -1)
    per_frame = gaussian_kl_between(mu_z, logvar_z, prior_mean, prior_logvar).mean(0)
    print("motion KL per frame (nats): " + " ".join(f"{v:.1f}" for v in per_frame.tolist()))
    print(f"static KL per clip (nats): {gaussian_kl(mu_s, logvar_s).mean():.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
