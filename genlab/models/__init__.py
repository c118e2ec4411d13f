"""Model families: each is a `GenerativeModel` (genlab/models/base.py) named by `model._target_`
in its YAML. This module builds one from a config section or a checkpoint, and names the families
only to read checkpoints written before `_target_` existed."""

from __future__ import annotations

import re

import torch

from genlab.errors import CheckpointError
from genlab.models.base import GenerativeModel
from genlab.config.targets import migrate_section, target_class

# `model.name` → class, for the configs of checkpoints from before `model._target_`.
LEGACY_TARGETS = {"vae": "genlab.models.vae.VAE", "gan": "genlab.models.gan.GAN", "cgan": "genlab.models.gan.CGAN"}


def model_class(model: dict) -> type[GenerativeModel]:
    """The class a config's `model` section names with `_target_` (module.Class)."""
    return target_class("model", model.get("_target_"), GenerativeModel, "genlab.models.vae.VAE")


def build_model(model: dict, optimizer: dict, image_shape, num_classes: int, device: torch.device) -> GenerativeModel:
    """The model a plain `model` config section describes, for data of this shape and class count."""
    return model_class(model)(model, optimizer, image_shape, num_classes, device)


def size_estimate(model: dict, optimizer: dict, image_shape, num_classes: int, batch_size: int) -> tuple[int, int, int]:
    """(parameters of the model's trained networks, values of its other parameter copies (weight
    averages: networks held as attributes beside `nets`), values in the largest activation of one
    decode of a batch), measured on torch's meta device: shapes only, no memory allocated."""
    largest = [0]

    def record(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel())

    with torch.device("meta"):
        built = build_model(model, optimizer, image_shape, num_classes, torch.device("meta"))
        nets = [getattr(built, name) for name in built.nets]
        hooks = [m.register_forward_hook(record) for net in nets for m in net.modules()]
        built.decode(built.prior(batch_size, None), built.random_labels(batch_size, None))
        for hook in hooks:
            hook.remove()
    trained = {id(p): p.numel() for net in nets for p in net.parameters()}
    copies = {id(p): p.numel() for held in vars(built).values() if isinstance(held, torch.nn.Module)
              for p in held.parameters() if id(p) not in trained}
    return sum(trained.values()), sum(copies.values()), largest[0]


def migrate_config(config: dict) -> None:
    """Bring a checkpoint's run config up to this genlab's keys, in place (its family's `migrate`)."""
    migrate_section(config, "model", LEGACY_TARGETS, model_class)


def load_model_state(model: GenerativeModel, state: dict) -> None:
    """Load a loaded checkpoint's model state; CheckpointError when it does not fit the networks
    (a checkpoint of a genlab version whose networks differ)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        found = re.search(r"size mismatch for [\w.]+|(?:Missing|Unexpected) key\(s\) in state_dict: \"[\w.]+\"", str(e))
        reason = found.group(0) if found else str(e).splitlines()[0][:120]
        version = state.get("genlab_version")
        raise CheckpointError(f"the checkpoint's {state['config']['model']['name']} weights (genlab {version}) do not fit "
                              f"this genlab's networks ({reason}): use genlab {version} for it, e.g. "
                              f"pip install genlab=={version}") from None


def model_from_checkpoint(state: dict, device: torch.device) -> GenerativeModel:
    """The model of a loaded checkpoint, rebuilt on `device`, in eval mode."""
    config, data = state["config"], state["data"]
    model = build_model(config["model"], config["optimizer"], data["image_shape"], data["num_classes"], device)
    load_model_state(model, state)
    model.train(False)
    return model
