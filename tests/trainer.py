"""Trainers for tests: a quiet Lightning Trainer, and the FAST fit that `make <stage> FAST=1` runs."""

from pathlib import Path

import wandb
from lightning.pytorch import Trainer

from experiments.cli import MACLCLI

CONF = Path(__file__).resolve().parents[1] / "conf"


def quiet_trainer(**kwargs) -> Trainer:
    """A quiet CPU Trainer; ``kwargs`` override or add Trainer arguments."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return Trainer(**{**defaults, **kwargs})


def fast_configs(stage: str, trainer: str = "trainer/cpu.yaml") -> list[str]:
    """The config flags of `make <stage> FAST=1` (base, trainer preset, stage config, FAST profiles)."""
    configs = ("base.yaml", trainer, f"{stage}.yaml", "fast.yaml", f"fast/{stage}.yaml")
    return [flag for config in configs for flag in ("--config", str(CONF / config))]


def fast_fit(root: Path, stage: str, name: str, *extra: str, trainer: str = "trainer/cpu.yaml") -> MACLCLI:
    """What `make <stage> FAST=1` fits, into ``root/<stage>/<name>``; the fitted CLI (its W&B run finished)."""
    try:
        return MACLCLI(args=["fit", *fast_configs(stage, trainer), "--run.root", str(root), "--run.name", name, *extra])
    finally:
        if wandb.run is not None:
            wandb.finish()
