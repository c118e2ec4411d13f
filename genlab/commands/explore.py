"""genlab explore: a local web page that generates from one checkpoint as you drag its sliders.

The server and API are in genlab/explore/server.py, the page in genlab/explore/page.html; this
module is the command line: keys checked before any work, the URL printed, Ctrl-C stops it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from genlab.config.checks import ConfigError, require
from genlab.commands.wrapper import check_jobs, reports_errors, run_command
from genlab.config.compose import config_dir
from genlab.errors import UserError


def check(cfg: DictConfig) -> None:
    """ConfigError for the first bad key (ckpt is checked by loading it)."""
    require(cfg, "port", "int", low=0, high=65535)
    if not isinstance(cfg.host, str) or not cfg.host:
        raise ConfigError(f"host={cfg.host!r} is not allowed: expected an address, e.g. host=127.0.0.1")


def serve(ckpt: str, host: str, port: int, data_root: str | None = None) -> None:
    """Load the checkpoint, start the server and answer until Ctrl-C."""
    import torch

    from genlab.explore.server import Explorer, ExploreServer
    from genlab.training.checkpoint import resolve

    torch.set_num_threads(1)  # one image at a time: a second thread costs more than it saves (README, Explore)
    explorer = Explorer(resolve(ckpt), data_root, log=lambda line: print(line, file=sys.stderr))
    try:
        server = ExploreServer(explorer, host, port)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}): pass another port=, or port=0 for any free one") from None
    if not server.loopback:
        print(f"genlab explore: warning: host={host} is not a loopback address: anyone who can reach this machine "
              "on that network can use the model; pass host=127.0.0.1 to keep it local", file=sys.stderr)
    print(f"genlab explore: {explorer.model.kind} from {explorer.ckpt} at {server.url} (Ctrl-C stops)", file=sys.stderr)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("genlab explore: stopped", file=sys.stderr)
    finally:
        server.server_close()


@hydra.main(config_path=config_dir(), config_name="explore", version_base="1.3")
@reports_errors("explore", required="genlab explore ckpt=outputs/<run>/checkpoints/last.pt")
def _app(cfg: DictConfig) -> None:
    try:
        serve(cfg.ckpt, cfg.host, cfg.port, cfg.data_root)
    except KeyboardInterrupt:  # Ctrl-C while the checkpoint loads
        sys.exit(130)


def run(args: list[str]) -> None:
    """`genlab explore ARGS`: check the keys first, then hand ARGS to the Hydra app."""
    run_command("explore", _app, args, check_jobs("explore", check))
