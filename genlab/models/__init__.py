"""Model families. Each owns its update rule (train_step), sampling and state; the loop owns time."""

from __future__ import annotations

import torch

from genlab.models.gan import CGAN, GAN
from genlab.models.vae import VAE

MODELS = {"vae": VAE, "gan": GAN, "cgan": CGAN}


def build_model(model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
    """The model named by model['name'], from plain config sections and the dataset's shape."""
    return MODELS[model["name"]](model, optimizer, image_shape, num_classes, device)
