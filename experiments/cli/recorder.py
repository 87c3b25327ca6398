"""What a finished run leaves for the next stage: ``metrics.json`` and the ``latest`` link of its stage."""

import json
import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from datamodules.state_files import write_atomically


class RunRecorder(Callback):
    """Writes ``metrics.json`` into the run folder after fit and test, and points ``latest`` at the run."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "fit")
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            link = run_dir.parent / "latest"
            staged = run_dir.parent / f".latest.{os.getpid()}"
            staged.unlink(missing_ok=True)
            staged.symlink_to(run_dir.name, target_is_directory=True)
            os.replace(staged, link)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "test")

    @staticmethod
    def _record(trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / "metrics.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        record.update(global_step=trainer.global_step, epoch=trainer.current_epoch, last_subcommand=stage)
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            record["best_checkpoint"] = checkpoint.best_model_path
            record["best_monitor"] = checkpoint.monitor
            if checkpoint.best_model_score is not None:
                record["best_score"] = float(checkpoint.best_model_score)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
