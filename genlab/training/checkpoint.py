"""Checkpoints: plain data only (tensors, numbers, strings, lists, dicts), written atomically.

`torch.load(path, weights_only=True)` loads every checkpoint genlab writes, so loading one never
executes code from the file. A write goes to a temporary file in the same folder, is fsynced, and
is renamed over the target: a crash at any moment leaves either the old or the new file, whole.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

import genlab
from genlab.errors import UserError

FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomically write `state` (plain data) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, "genlab_version": genlab.__version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a genlab checkpoint safely; raise CheckpointError with a one-line reason otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (pass ckpt=<run dir>/checkpoints/last.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than plain data ({str(e).splitlines()[0][:120]}); "
            "only load checkpoints that genlab wrote"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (empty, truncated or corrupt: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a genlab checkpoint (no format_version); pass a checkpoints/last.pt that genlab wrote")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}, newer than this genlab's {FORMAT_VERSION} "
            f"(written by genlab {state.get('genlab_version')}); upgrade genlab to load it"
        )
    return state
