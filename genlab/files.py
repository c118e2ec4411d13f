"""Writing a file so that no reader ever sees it half-written.

`write_atomically` writes to a temporary file beside the target, fsyncs it, renames it over the
target and fsyncs the folder (`replacing` does the same for a writer that wants a path, not a file:
numpy's memory-mapped .npy): a crash at any moment, `kill -9` or power loss included, leaves
either the old file or the new one, whole (POSIX rename is atomic within a file system). A killed
write leaves only a hidden `.<name>.<random>.tmp`, never read as a result; the next process that
holds the folder's lock removes it (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A new temporary file beside `path` for the caller to write; when the block ends without an
    error it is fsynced and put in place atomically, otherwise removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Not tempfile.mkstemp: its files are private (0600); a result file gets the umask's permissions.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary binary file beside `path`, then put it in place atomically."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode()))


def remove_stale_temporaries(folder: Path, names: str = "*") -> None:
    """Delete the temporary files killed writes of files named `names` (a glob) left in `folder`.
    Only for files no other process writes (a run's own files, under its lock): a live writer's
    temporary file looks the same."""
    for stale in Path(folder).glob(f".{names}.*.tmp"):
        stale.unlink(missing_ok=True)
