"""Evaluation of talking-head videos and checkpoints: what ``make evaluate`` and ``make tables`` run."""
