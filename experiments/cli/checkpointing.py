"""The checkpoint callback of every stage (``conf/base.yaml``): ``last.ckpt`` is always the newest state."""

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class RunModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` is the newest state after every validation.

    Lightning 2.6 refreshes ``last`` only when it also saves a best checkpoint, so after an epoch whose monitor
    did not improve, a rerun of the same name would resume from an older state. This relies on ModelCheckpoint's
    private ``_should_skip_saving_checkpoint``, ``_should_save_on_train_epoch_end``, ``_save_last_checkpoint`` and
    ``_monitor_candidates`` (Lightning is pinned; ``tests/test_cli.py`` checks the behaviour).
    """

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._refresh_last(trainer, on_train_epoch_end=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_last(trainer, on_train_epoch_end=False)

    def _refresh_last(self, trainer: Trainer, on_train_epoch_end: bool) -> None:
        """Saves ``last`` where Lightning saves checkpoints (train epoch end or validation end) if it did not."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            if self._should_save_on_train_epoch_end(trainer) == on_train_epoch_end:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
