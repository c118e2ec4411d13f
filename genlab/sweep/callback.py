"""The Hydra callback of `genlab train -m` (configs/train.yaml): the sweep's summary when it ends."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from genlab.errors import UserError, fail
from genlab.sweep.summary import summarize


class SweepSummary(Callback):
    """Hydra callback (configs/train.yaml): summarise the sweep when it ends; exit non-zero when
    a job did not finish ok (jobs catch their own failures, so the others run to the end)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        try:
            records = summarize(root)
        except UserError as e:
            fail("train", e)
        bad = [r["job"] for r in records if r["status"] != "ok"]
        if bad:
            fail("train", f"{len(bad)} of {len(records)} jobs did not finish ok ({', '.join(bad)}): "
                          f"see {root / 'summary.csv'} and each job's train.log; re-run the same command to retry them")
