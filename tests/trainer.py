"""A Lightning Trainer for tests: one CPU process, no logger, checkpoints, progress bar or sanity steps."""

from lightning.pytorch import Trainer


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
