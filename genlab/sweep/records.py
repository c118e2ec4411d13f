"""The result record of a sweep's job (`result.json` in its run directory), and reading a sweep's
records back: the format the summary, the skip of finished jobs and `genlab summarize` share.

    overrides  the job's overrides, typed: {"beta": 4, "model": "vae", …}
    status     running | ok | failed   (still `running` after a kill: the job never finished)
    error      why it failed, in one line; null otherwise
    steps, wall_s, metrics, config (the resolved config the job ran)
"""

from __future__ import annotations

import json
from pathlib import Path

from genlab.errors import UserError

RECORD_NAME = "result.json"
STATUSES = ("running", "ok", "failed")


def read_record(path: Path) -> dict:
    """A job's result record; UserError naming the file when it is unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable result record ({e}); delete it and re-run that job") from None
    if not (isinstance(record, dict) and record.get("status") in STATUSES and isinstance(record.get("overrides"), dict)
            and isinstance(record.get("metrics"), dict)):
        raise UserError(f"{path} is not a genlab result record (status, overrides, metrics); delete it and re-run that job")
    return record


def is_finished(run_dir: Path, overrides: dict) -> bool:
    """Whether run_dir holds an ok record of a job with these overrides (so re-running skips it)."""
    path = run_dir / RECORD_NAME
    try:
        record = read_record(path) if path.is_file() else None
    except UserError:
        return False
    return record is not None and record["status"] == "ok" and record["overrides"] == overrides


def keys_in_order(dicts) -> list[str]:
    """Keys of several dicts, in order of first appearance."""
    return list(dict.fromkeys(key for d in dicts for key in d))


def is_numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def varying_keys(records: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (the swept ones)."""
    keys = keys_in_order(r["overrides"] for r in records)
    return [k for k in keys if len({json.dumps(r["overrides"].get(k)) for r in records}) > 1]


def load_records(root: Path) -> list[dict]:
    """Every job record under root, each with its `job` name (its directory relative to root),
    sorted by the swept values (numbers by size)."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the sweep directory, e.g. genlab summarize outputs/multirun/<date>/<time>")
    records = []
    for path in sorted(root.rglob(RECORD_NAME)):
        record = read_record(path)
        record["job"] = path.parent.name if path.parent == root else str(path.parent.relative_to(root))
        records.append(record)
    if not records:
        raise UserError(f"no job records ({RECORD_NAME}) under {root}: pass a directory that genlab train -m wrote")
    keys = varying_keys(records)
    records.sort(key=lambda r: [(0, v, "") if is_numeric(v) else (1, 0, str(v))
                                for v in (r["overrides"].get(k) for k in keys)] + [r["job"]])
    return records
