"""genlab: a config-driven experiment runner for image generative models."""

__version__ = "0.1.0"
