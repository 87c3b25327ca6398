"""The shared LightningCLI of every training stage.

Each run lives in ``<run.root>/<run.stage>/<run.name>/``: the resolved ``config.yaml``, ``checkpoints/``
(``last.ckpt`` and the best), the W&B files (offline unless the user is logged in) and ``metrics.json``.
``<run.root>/<run.stage>/latest`` points at the newest finished run, so the next stage finds its input
checkpoint without a path. Rerunning a name whose ``last.ckpt`` exists resumes it.

    python -m experiments.cli fit --config conf/base.yaml --config conf/trainer/cpu.yaml \
        --config conf/sfe.yaml --run.name my-run
"""

import json
import netrc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import wandb
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

RUN_NAME_ENV = "MACL_RUN_NAME"


@dataclass
class RunSettings:
    """Where a run writes: ``<root>/<stage>/<name>/``."""

    stage: str = "adhoc"
    """Stage folder, e.g. ``sfe``, ``mdn``, ``renderer``."""
    name: str | None = None
    """Run name; a timestamp when not given."""
    root: str = "runs"
    """Folder of all runs."""


def run_directory(settings: Namespace) -> Path:
    """The run folder of ``settings``; an unnamed run gets one timestamp shared with DDP child processes."""
    name = settings.name or os.environ.setdefault(RUN_NAME_ENV, time.strftime("%Y%m%d-%H%M%S"))
    return Path(settings.root) / settings.stage / name


def wandb_logged_in() -> bool:
    """Whether W&B credentials exist (environment or ~/.netrc), without touching the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _class_configs(value) -> list[Namespace]:
    """The ``class_path``/``init_args`` entries of a trainer option that may be one, a list, or a bool."""
    entries = value if isinstance(value, list) else [value]
    return [entry for entry in entries if isinstance(entry, Namespace) and "class_path" in entry]


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
            if checkpoint.best_model_score is not None:
                record["best_score"] = float(checkpoint.best_model_score)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


class MACLCLI(LightningCLI):
    """LightningCLI with the project's run-folder convention (module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"callbacks": [RunRecorder()]})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunSettings, "run")
        # Stage 2 normalises with the train split's statistics (index.json); skipped for data without them.
        parser.link_arguments("data.statistics", "model.init_args.statistics", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = run_directory(config.run)
        config.trainer.default_root_dir = str(run_dir)
        for logger in _class_configs(config.trainer.logger):
            if logger.class_path.endswith("WandbLogger"):
                logger.init_args.save_dir = str(run_dir)
                logger.init_args.name = logger.init_args.name or f"{config.run.stage}/{run_dir.name}"
                if "WANDB_MODE" not in os.environ and not wandb_logged_in():
                    logger.init_args.offline = True
        for callback in _class_configs(config.trainer.callbacks):
            if callback.class_path.endswith("ModelCheckpoint"):
                callback.init_args.dirpath = str(run_dir / "checkpoints")
        last = run_dir / "checkpoints" / "last.ckpt"
        if self.subcommand == "fit" and config.ckpt_path is None and last.is_file():
            print(f"Resuming run {run_dir} from {last}")
            config.ckpt_path = str(last)


def main(args=None) -> None:
    """Entry point of ``python -m experiments.cli`` and of every stage target of the Makefile."""
    try:
        MACLCLI(args=args)
    finally:
        if wandb.run is not None:  # so that a second run in the same process gets its own W&B run
            wandb.finish()


if __name__ == "__main__":
    main()
