"""Sweeps: every job of `genlab train -m …` leaves a result record, and a sweep's summary is rebuilt
from those alone.

    jobs.py      a job's directory name, typed overrides, threads and record; skip, resume or restart
    records.py   the record format (result.json) and reading a sweep's records back
    locks.py     one launcher per sweep directory, one process per job
    summary.py   summary.csv, summary.json, the table and the plot (plots.py), from the records
    hparams.py   TensorBoard's HParams view of the jobs and the sweep
    callback.py  the Hydra callback that summarises a sweep when it ends (configs/train.yaml)

Re-running a sweep into the same `hydra.sweep.dir` skips each job whose record says ok with the
same overrides; every other job continues from its checkpoints/last.pt, or starts again when it has
none or that checkpoint is already at trainer.max_steps (killed after its last checkpoint, before
its record said ok: the final log window's means, which the record holds, are not in a checkpoint)
(see `genlab.commands.train._app`).
"""
