"""The class a config section names with `_target_` (module.Class): how genlab finds a model family
(genlab/models/) or a dataset (genlab/data/) without a registry, so one from outside genlab is
found the same way (its folder on PYTHONPATH)."""

from __future__ import annotations

import importlib

from genlab.errors import UserError


def target_class(section: str, target, base: type, example: str) -> type:
    """The subclass of `base` that `<section>._target_` = `target` names; a one-line UserError when it
    cannot be imported or is not one (`example`: a valid value for the message)."""
    module_name, _, class_name = target.rpartition(".") if isinstance(target, str) else ("", "", "")
    try:
        found = getattr(importlib.import_module(module_name), class_name, None) if module_name else None
    except ImportError as e:
        raise UserError(f"{section}._target_={target} cannot be imported ({e}): install its package or put its "
                        "folder on PYTHONPATH") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise UserError(f"{section}._target_={target!r} is not a genlab {section} class: name a subclass of "
                        f"{base.__module__}.{base.__name__}, e.g. {section}._target_={example}")
    return found


def migrate_section(config: dict, section: str, legacy: dict[str, str], find) -> None:
    """Bring a checkpoint's run config up to this genlab's keys, in place, for one section (model,
    dataset): its `_target_` from its `name` when it predates `_target_` (`legacy`: name → target),
    then the class's own `migrate(config)`. `find(section dict)` is the section's class lookup."""
    part = config.get(section)
    if not isinstance(part, dict):
        return
    if "_target_" not in part and part.get("name") in legacy:
        part["_target_"] = legacy[part["name"]]
    if "_target_" in part:
        try:
            found = find(part)
        except UserError:  # building from it reports it; reading the checkpoint needs no class
            return
        found.migrate(config)
