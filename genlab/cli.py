"""The `genlab` command: picks the subcommand and hands the rest of argv to it (a Hydra app for
train and sample).

Kept free of torch and Hydra imports so that `genlab --help` answers at once.
"""

from __future__ import annotations

import importlib
import os
import sys

SUBCOMMANDS = {
    "train": ("genlab.commands.train", "train a model (Hydra overrides; -m for a sweep)"),
    "sample": ("genlab.commands.sample", "write a PNG grid of samples from a checkpoint"),
    "explore": ("genlab.commands.explore", "a local web page that generates from a checkpoint as you drag sliders"),
    "eval": ("genlab.commands.eval", "metrics of a checkpoint (FID, KID, precision/recall, NLL, …) → table + eval.json"),
    "summarize": ("genlab.commands.summarize", "rebuild a sweep directory's summary (table, csv, json, plot)"),
}

USAGE = """usage: genlab <command> [hydra overrides and flags]

commands:
{commands}

examples:
  genlab train model=vae beta=4
  genlab train -m beta=1,2,4,8
  genlab summarize outputs/multirun/<date>/<time>
  genlab train resume=outputs/<date>/<time>   continue a run (Ctrl-C, SIGTERM or SIGHUP checkpoints first)
  genlab train -m model=gan noise_dim=16,64,128
  genlab train model=cgan model.loss=hinge
  genlab sample ckpt=outputs/<date>/<time>/checkpoints/last.pt n=64
  genlab sample ckpt=… mode=interpolate      also: label=K (cgan), mode=traverse (vae)
  genlab explore ckpt=outputs/<date>/<time>/checkpoints/last.pt      prints the URL of the page
  genlab eval ckpt=outputs/<date>/<time>/checkpoints/last.pt metrics=[fid,kid,pr] n=10000
  genlab train --help            Hydra's help for a command: config groups and keys
  genlab train --cfg job         print the composed config
  eval "$(genlab -sc install=bash)"   shell completion for commands and overrides
"""


def _usage() -> str:
    return USAGE.format(commands="\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items()))


def _complete(args: list[str]) -> None:
    """Bash completion: subcommands for the first word, then the subcommand's Hydra completion."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if args and args[0].startswith("query") and (len(words) < 2 or (len(words) == 2 and not line.endswith(" "))):
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in SUBCOMMANDS if name.startswith(prefix)))
        return
    command = words[1] if args and args[0].startswith("query") else "train"
    module = importlib.import_module(SUBCOMMANDS[command][0]) if command in SUBCOMMANDS else None
    if not hasattr(module, "_app"):  # not a Hydra app: bash completes file names
        return
    if args and args[0].startswith("query"):
        os.environ["COMP_LINE"] = line.replace(f" {command}", "", 1)  # Hydra strips the program name
    sys.argv = [sys.argv[0], "-sc", *args]
    module._app()


def main(argv: list[str] | None = None) -> None:
    try:
        _dispatch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # the reader stopped early (`genlab --help | head -3`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not raise again
        sys.exit(141)  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _dispatch(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    if args[0] in ("-sc", "--shell-completion"):
        _complete(args[1:])
        return
    if args[0] not in SUBCOMMANDS:
        sys.exit(f"genlab: error: unknown command {args[0]!r}: choose one of {', '.join(SUBCOMMANDS)} (see genlab --help)")
    importlib.import_module(SUBCOMMANDS[args[0]][0]).run(args[1:])


if __name__ == "__main__":
    main()
