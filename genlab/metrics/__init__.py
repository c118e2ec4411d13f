"""Evaluation metrics: likelihood bounds, feature-space distances, disentanglement, classifiers.

Every function here takes tensors and plain arguments (no config, no Hydra), so each can be tested
against closed forms and reference computations; genlab/commands/eval.py wires them to checkpoints.
"""
