"""The `genlab` commands (train, sample, eval, explore, summarize): each a thin module that checks its
command line through the one shared wrapper (wrapper.py), then runs its Hydra app."""
