"""Checkpoints: plain data only (tensors, numbers, strings, lists, dicts), written atomically.

`torch.load(path, weights_only=True)` loads every checkpoint genlab writes, so loading one never
executes code from the file; anything else (a pickle that names a function, a legacy non-zip
pickle) is refused before or while unpickling. Every write is atomic (genlab/files.py): a crash at
any moment, `kill -9` included, leaves either the old or the new file, whole.

A run's checkpoints/ folder holds last.pt, always the newest, and with trainer.keep_last = K > 0
also step_XXXXXXX.pt for the K newest checkpoint steps: hard links to what last.pt was when it was
written (a copy where the file system has no hard links), so keeping them costs no second write.

torch is imported inside the functions so that a missing, empty or truncated file is reported
without waiting for it.
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import genlab
from genlab.errors import CheckpointError
from genlab.config.checks import ConfigError
from genlab.config.overrides import hydra_value
from genlab.files import remove_stale_temporaries, write_atomically

FORMAT_VERSION = 1
LAST = "last.pt"
STEP_FILE = re.compile(r"step_(\d{7,})\.pt")
# hardware keys added after checkpoints were first written, at the value those checkpoints ran
# with; load_checkpoint fills them in (and the model family's and dataset's own, see
# genlab.models.migrate_config and genlab.data.migrate_dataset_config),
# so an older checkpoint builds, samples and resumes as one written now.
ADDED_HARDWARE_KEYS = {"compile": False, "distributed": False, "layout": "auto"}


def run_dir_of(ckpt: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/<file>)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def resume_command(ckpt: Path, *overrides: str) -> str:
    """The shell command that continues from `ckpt` (a run's last.pt is named by its run directory)."""
    target = run_dir_of(ckpt) if ckpt.name == LAST else ckpt
    resume = f"resume={hydra_value(str(target))}"
    # Hydra's single quotes read best inside the shell's double quotes when nothing expands there.
    shell = f'"{resume}"' if "'" in resume and not re.search(r'["$`\\!]', resume) else shlex.quote(resume)
    return " ".join(["genlab train", shell, *map(shlex.quote, overrides)])


def refuse_overwrite(run_dir: Path, otherwise: str) -> None:
    """Raise CheckpointError when `run_dir` already holds a run's checkpoint: a fresh run must not
    write over it."""
    last = run_dir / "checkpoints" / LAST
    if last.exists():
        raise CheckpointError(f"{run_dir} already holds a trained run: continue it with `{resume_command(last)}`, or {otherwise}")


def check_output_dir(path: Path | None, multirun: bool, *, fresh: bool) -> None:
    """Raise a UserError when Hydra could not create the run (or sweep) directory `path`, or when a
    fresh run would write over a run directory that already holds a checkpoint."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if path is None:  # set from values known only at run time: Hydra reports those
        return
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {existing} is not a directory; choose another {key}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} cannot be written: {existing} is read-only for this user; choose another {key}")
    if fresh and not multirun:
        refuse_overwrite(path, f"choose another {key}")


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomically write `state` (plain data) to `path`."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, "genlab_version": genlab.__version__, **state}
    write_atomically(path, lambda f: torch.save(state, f))


def resolve(path: str | Path) -> Path:
    """A checkpoint file (absolute) from a checkpoint or run directory path (its checkpoints/last.pt)."""
    path = Path(path).absolute()
    if path.is_dir():
        return path / "checkpoints" / LAST if (path / "checkpoints").is_dir() else path / LAST
    return path


def _refusal(error: pickle.UnpicklingError) -> str:
    """The one line of torch's weights-only refusal that names what the file wanted to run."""
    found = re.search(r"unsupported GLOBAL (\S+)|Unsupported (?:global|class|operand)[^\n]*", str(error))
    if found is None:
        return "it holds objects other than plain data"
    return f"it would call {found.group(1)}" if found.group(1) else found.group(0).strip().rstrip(".")


def load_checkpoint(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """Load a genlab checkpoint safely (its config brought up to this genlab's keys); raise
    CheckpointError with a one-line reason otherwise. `mmap`: the tensors stay in the file until
    read, so a caller that wants only the step or the config does not read the weights."""
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (pass a run directory or its checkpoints/last.pt)")
    try:
        with open(path, "rb") as f:
            empty, is_zip = os.fstat(f.fileno()).st_size == 0, zipfile.is_zipfile(f)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    if empty:
        raise CheckpointError(f"{path} is empty (0 bytes): pass another checkpoint, e.g. a checkpoints/step_*.pt of the run")
    # genlab writes torch's zip format only; a legacy pickle is never unpickled, and a file cut
    # short loses the zip's central directory at its end.
    if not is_zip:
        raise CheckpointError(f"{path} is truncated or not a genlab checkpoint (not a complete zip archive): pass a checkpoints/last.pt that genlab wrote")
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} was refused and not loaded: {_refusal(e)}; only load checkpoints that genlab wrote") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("format_version"), int):
        raise CheckpointError(f"{path} is not a genlab checkpoint (no format_version): pass a checkpoints/last.pt that genlab wrote")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}, newer than this genlab's {FORMAT_VERSION} "
            f"(written by genlab {state.get('genlab_version')}): upgrade genlab to load it"
        )
    config = state.get("config")
    if isinstance(config, dict):
        from genlab.data import migrate_dataset_config
        from genlab.models import migrate_config

        for key, value in ADDED_HARDWARE_KEYS.items():
            config.get("hardware", {}).setdefault(key, value)
        migrate_config(config)
        migrate_dataset_config(config)
    return state


class RunCheckpoints:
    """The checkpoints/ folder of one run: last.pt plus the `keep_last` newest step_XXXXXXX.pt.

    `newest` is (step, path) of the newest complete checkpoint of this run's timeline: the one it
    resumed from, then each one written.
    """

    def __init__(self, folder: Path, keep_last: int, newest: tuple[int, Path] | None = None):
        self.folder, self.keep_last, self.newest = folder, keep_last, newest
        self.last = folder / LAST
        # Temporary files of writes that were killed (kill -9, power loss) are never loaded, but
        # each is a whole checkpoint's worth of disk.
        remove_stale_temporaries(folder)

    def steps(self) -> dict[int, Path]:
        """The step checkpoints present: step → path."""
        return {int(m.group(1)): p for p in self.folder.glob("step_*.pt") if (m := STEP_FILE.fullmatch(p.name))}

    def describe_newest(self, *overrides: str) -> str:
        """Where the newest good checkpoint is and the command that resumes from it."""
        if self.newest is None:
            return "no checkpoint was written yet"
        step, path = self.newest
        return f"newest good checkpoint: {path} (step {step}); resume with: {resume_command(path, *overrides)}"

    def save(self, state: dict, step: int) -> None:
        """Write last.pt and, keeping K = keep_last > 0, step_<step>.pt; remove step files beyond
        the K newest. On an OSError (a full disk, a vanished folder) the files already there stay
        whole, and a one-line CheckpointError says which write failed and where the newest good
        checkpoint is."""
        target = self.last
        try:
            save_checkpoint(state, self.last)
            self.newest = (step, self.last)
            target = self.folder / f"step_{step:07d}.pt"
            if self.keep_last:
                self._link_or_copy(self.last, target)
            # Step files newer than this step belong to a continuation that was abandoned (the
            # run resumed from an older checkpoint), like the TensorBoard events the resume purged.
            steps = self.steps()
            kept = sorted(s for s in steps if s <= step)[-self.keep_last:] if self.keep_last else []
            for old, path in steps.items():
                if old not in kept:
                    path.unlink()
        except OSError as e:
            raise CheckpointError(f"could not write {target} ({e.strerror or e}); {self.describe_newest()}") from None

    @staticmethod
    def _link_or_copy(source: Path, target: Path) -> None:
        tmp = target.with_name(f".{target.name}.link.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
            os.replace(tmp, target)
        except OSError:  # a file system without hard links: copy instead
            tmp.unlink(missing_ok=True)
            with open(source, "rb") as f:
                write_atomically(target, lambda out: shutil.copyfileobj(f, out))
