"""Resuming a run: its config must be the one it was made with, except in :data:`RESUME_MAY_CHANGE`."""

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from experiments.cli.errors import RunError

RESUME_MAY_CHANGE = (
    "ckpt_path",
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.max_steps",
    "trainer.min_steps",
    "trainer.max_time",
    "trainer.limit_",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.logger",
    "trainer.callbacks",
    "data.init_args.num_workers",
)
"""Config keys (or key prefixes) that a resumed run may change: how long and on what it trains, and logging."""


def _flatten(config: object, prefix: str = "") -> dict[str, object]:
    """Nested config mappings -> ``{"model.init_args.memory": True, ...}`` (lists stay values)."""
    if not isinstance(config, Mapping):
        return {prefix: config}
    flat = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_changes(saved: dict, current: dict) -> list[str]:
    """``"key: old -> new"`` for every config key whose value differs, except those in :data:`RESUME_MAY_CHANGE`."""
    old, new = _flatten(saved), _flatten(current)
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key) and not key.startswith(RESUME_MAY_CHANGE)
    ]
    missing = "(not set)"
    return [f"{key}: {json.dumps(old.get(key, missing))} -> {json.dumps(new.get(key, missing))}" for key in changed]


def check_resumable(run_dir: Path, current: dict) -> None:
    """Refuses to resume ``run_dir`` with a config that differs from its saved ``config.yaml`` (say, another
    ``memory``, which would end in a shape error) in more than :data:`RESUME_MAY_CHANGE`."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    changes = config_changes(yaml.safe_load(saved_path.read_text()), current)
    if changes:
        shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise RunError(
            f"Run {run_dir} was made with another config than {saved_path} ({shown}): to resume it keep its "
            f"config (--config {saved_path}), to train the new config choose a new name (--run.name, make "
            f"NAME=...), or pass --ckpt_path to resume with the new config anyway."
        )
