"""Model families. Each owns its update rule (train_step), sampling and state; the loop owns time."""

from __future__ import annotations

import re

import torch

from genlab.models.gan import CGAN, GAN
from genlab.models.vae import VAE

MODELS = {"vae": VAE, "gan": GAN, "cgan": CGAN}


def build_model(model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device):
    """The model named by model['name'], from plain config sections and the dataset's shape."""
    return MODELS[model["name"]](model, optimizer, image_shape, num_classes, device)


def load_model_state(model, state: dict) -> None:
    """Load a loaded checkpoint's model state; CheckpointError when it does not fit the networks
    (a checkpoint of a genlab version whose networks differ)."""
    from genlab.training.checkpoint import CheckpointError

    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        found = re.search(r"size mismatch for [\w.]+|(?:Missing|Unexpected) key\(s\) in state_dict: \"[\w.]+\"", str(e))
        reason = found.group(0) if found else str(e).splitlines()[0][:120]
        version = state.get("genlab_version")
        raise CheckpointError(f"the checkpoint's {state['config']['model']['name']} weights (genlab {version}) do not fit "
                              f"this genlab's networks ({reason}): use genlab {version} for it, e.g. "
                              f"pip install genlab=={version}") from None


def model_from_checkpoint(state: dict, device: torch.device):
    """The model of a loaded checkpoint, rebuilt on `device`, in eval mode."""
    config, data = state["config"], state["data"]
    model = build_model(config["model"], config["optimizer"], data["image_shape"], data["num_classes"], device)
    load_model_state(model, state)
    model.train(False)
    return model
