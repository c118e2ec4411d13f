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
