"""Configuration: composing a command line into configs (compose.py, the one place that talks to
Hydra's internals), the override grammar, one-line value checks (checks.py), the checks of a whole
run (validate.py) and the `_target_` lookup of families and datasets (targets.py)."""
