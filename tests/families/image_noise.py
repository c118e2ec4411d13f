"""A model family defined outside genlab, to prove the contract is all a family needs.

Its prior is image-shaped: z ~ N(0, I) of shape (noise_channels, H, W). decode(z) = sigmoid(conv(z))
with one 3×3 convolution, trained by regression of decode(z) on the batch's images (squared error
summed over pixels). It learns the data's mean image; that is enough to exercise training,
checkpoints, resume, sampling and eval.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.config.checks import require
from genlab.models import optim
from genlab.models.base import GenerativeModel
from genlab.models.optim import make_optimizer


class ImageNoise(GenerativeModel):
    nets = ("net",)

    def __init__(self, model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
        self.image_shape, self.device = tuple(image_shape), device
        self.noise_shape = (model["noise_channels"], *self.image_shape[1:])
        self.net = nn.Conv2d(model["noise_channels"], self.image_shape[0], 3, padding=1).to(device)
        self.optimizer = make_optimizer(self.net.parameters(), optimizer)

    @classmethod
    def validate(cls, cfg) -> None:
        require(cfg, "model.noise_channels", "int", low=1)
        require(cfg, "model.lr", "number", low=0, low_open=True)

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *self.noise_shape, generator=generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.net(latents.to(self.device)))

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        z = batch.noise((batch.images.shape[0], *self.noise_shape))
        loss = (torch.sigmoid(self.net(z)) - batch.images).square().flatten(1).sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        optim.backward(loss, self.optimizer)
        optim.step(self.optimizer)
        return {"squared_error": loss.detach()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.optimizer}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
