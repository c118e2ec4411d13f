"""One writer per directory: an exclusive lock on a file inside it, which holds the holder's pid.

`genlab train` (a resume too) holds its run directory's lock (RUN_LOCK) from before it writes
anything there until the command ends; a second `genlab train` with that directory stops in one
line naming the holder's pid, and writes nothing there. The lock is taken before Hydra creates the
directory and writes .hydra/, wherever the directory is known then; one named by values Hydra sets
only when it runs (`hydra.run.dir=outputs/${hydra:runtime.choices.model}`) is locked when the app
starts, before genlab writes anything. A sweep's job holds the same lock in its own directory, and
the sweep's launcher the sweep directory's (genlab/sweep/locks.py).

The lock is flock(2): the kernel releases it when the process that holds it dies, kill -9 and
crashes included, and a reboot or power loss leaves no holder. So the lock file a killed run leaves
behind is no lock: the next process takes it and writes its own pid. A file system without file
locks (some network file systems answer ENOLCK, ENOSYS or EOPNOTSUPP) gets a warning and no lock.

A directory named by the clock (`${now:…}`, Hydra's default) is claimed by creating it: when it
exists (another launch in the same second), the next of `<dir>-2`, `<dir>-3`, … is taken.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks
    fcntl = None

from genlab.errors import UserError

RUN_LOCK = ".genlab-run.lock"  # in a run directory (a sweep job's too), held by the process that writes it
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)  # flock's answers where the file system has none
_held: dict[Path, int] = {}  # directory → descriptor of its lock file, held until release_all()


def lock(path: Path, wait: bool) -> int | None:
    """An exclusive flock on `path` (created if missing), its holder's pid written in it; None
    when another process holds it and not `wait`. The lock lasts until the descriptor is closed,
    which the kernel does when the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as e:
                if e.errno not in NO_LOCKS:
                    raise
                print(f"genlab: warning: cannot lock {path} ({e.strerror}): this file system has no file locks, "
                      "so nothing stops a second process from writing there", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def holder(path: Path) -> str | None:
    """The pid the holder of the lock file `path` wrote into it, when readable."""
    try:
        pid = path.read_text().strip()
    except OSError:
        return None
    return pid if pid.isdigit() else None


def held_by(path: Path) -> str | None:
    """None when no process holds the lock file `path`; otherwise its holder's pid ("" when unknown)."""
    if fcntl is None or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder(path) or ""
    finally:
        os.close(fd)
    return None


def claim(root: Path, from_clock: bool, name: str) -> Path | None:
    """Create the directory `root` and lock it (the lock file `name` inside) until release_all();
    return the directory claimed: `root`, or when `from_clock` and `root` exists, the first free of
    `<root>-2`, `<root>-3`, …. None when `root` (not from the clock) is held by another process.
    OSError when it cannot be created."""
    if not from_clock:
        root.mkdir(parents=True, exist_ok=True)
        claimed, fd = root, lock(root / name, wait=False)
        if fd is None:
            return None
    else:
        for n in range(1, 1000):
            claimed = root if n == 1 else root.with_name(f"{root.name}-{n}")
            try:
                claimed.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        else:
            raise OSError(errno.EEXIST, f"{root} and 998 numbered siblings already exist")
        fd = lock(claimed / name, wait=True)  # new and ours: free at once
    _held[claimed.resolve()] = fd
    return claimed


def holds(root: Path) -> bool:
    """Whether this process holds the directory `root` (claimed since the command began)."""
    return root.resolve() in _held


def release_all() -> None:
    """Let go of every directory this process claimed (a process that goes on after the command:
    a notebook, tests/ddp_worker.py)."""
    while _held:
        os.close(_held.popitem()[1])


def hold_run_dir(run_dir: Path, from_clock: bool) -> Path:
    """Claim the run directory `run_dir` for this command (see claim); the directory held. A
    UserError naming the holder's pid and the ways out when another process writes it."""
    try:
        claimed = claim(run_dir, from_clock, RUN_LOCK)
    except OSError as e:
        raise UserError(f"cannot create hydra.run.dir={run_dir} ({e.strerror or e}): choose another hydra.run.dir") from None
    if claimed is None:
        _refuse(run_dir, holder(run_dir / RUN_LOCK))
    return claimed


def refuse_if_held(run_dir: Path) -> None:
    """The UserError of hold_run_dir when another process holds `run_dir` now; nothing is created."""
    pid = held_by(run_dir / RUN_LOCK)
    if pid is not None:
        _refuse(run_dir, pid)


def _refuse(run_dir: Path, pid: str | None) -> None:
    who, stop = (f" (pid {pid})", f"stop it (kill {pid})") if pid else ("", "stop it")
    raise UserError(f"{run_dir} is being written by another process{who}: wait for it to end, {stop}, "
                    "or choose another hydra.run.dir")
