"""genlab's one atomic writer (genlab/files.py): a reader sees the old file or the new one, whole."""

from __future__ import annotations

import pytest

from genlab.files import replacing, write_atomically


@pytest.mark.parametrize("write", [
    lambda target, data: write_atomically(target, lambda f: f.write(_or_fail(data))),
    lambda target, data: _by_path(target, data),  # numpy's memory-mapped .npy writes by path
])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, write):
    target = tmp_path / "result.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError):
        write(target, None)  # fails half-way
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    write(target, b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def _by_path(target, data):
    with replacing(target) as tmp:
        tmp.write_bytes(b"half")
        if data is None:
            raise ValueError("failed")
        tmp.write_bytes(data)


def _or_fail(data):
    if data is None:
        raise ValueError("failed")
    return data
