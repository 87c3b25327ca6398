"""The shared LightningCLI of every training stage.

Each run lives in ``<run.root>/<run.stage>/<run.name>/``: the resolved ``config.yaml``, ``checkpoints/``
(``last.ckpt`` and the best), the W&B files (offline unless the user is logged in) and ``metrics.json``.
``<run.root>/<run.stage>/latest`` points at the newest finished run, so the next stage finds its input
checkpoint without a path. Rerunning a name whose ``last.ckpt`` exists resumes it, once its config is checked
against the run's saved ``config.yaml``. The best checkpoint is chosen on ``run.monitor`` (each stage's yaml
names its own), and a model's settings that the shards fix (mel bins, audio window, frames per step) are
checked against the shards' ``index.json`` before training; each refusal is one sentence (:class:`RunError`).

    python -m experiments.cli fit --config conf/base.yaml --config conf/trainer/cpu.yaml \
        --config conf/sfe.yaml --run.name my-run
"""

import json
import netrc
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import wandb
import yaml
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules.audio import MELS_PER_FRAME, WINDOW_MELS
from datamodules.shards import ShardsError, read_index
from datamodules.state_files import write_atomically
from lightning_modules.checkpoints import CheckpointError

RUN_NAME_ENV = "MACL_RUN_NAME"
LINKS = [("data.init_args.step_stride", "model.init_args.step_stride")]
"""Data settings that the model records (so the next stage knows them): linked when both classes take them."""
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


class RunError(ValueError):
    """A run that cannot start as configured; the message is one sentence that says what to do."""


@dataclass
class RunSettings:
    """Where a run writes: ``<root>/<stage>/<name>/``."""

    stage: str = "adhoc"
    """Stage folder, e.g. ``sfe``, ``mdn``, ``renderer``."""
    name: str | None = None
    """Run name; when not given, one that every process of the launch agrees on (:func:`default_run_name`)."""
    root: str = "runs"
    """Folder of all runs."""
    monitor: str = "val/loss"
    """Logged metric that chooses the best checkpoint (``checkpoints/best-*.ckpt``, ``best_checkpoint``)."""
    monitor_mode: Literal["min", "max"] = "min"
    """Whether the best ``monitor`` is the smallest or the largest."""


def default_run_name(environ: dict[str, str] = os.environ) -> str:
    """The name of an unnamed run, the same in every process of one launch, kept in ``environ[MACL_RUN_NAME]``.

    Processes that Lightning starts inherit the first one's name through the environment. Processes that a
    launcher starts on their own take it from the launch: ``slurm-<job id>[.<step id>]`` for several SLURM tasks,
    ``torchrun-<run id>`` under torchrun (the first 8 characters of a random id), so a requeued or restarted
    job resumes its own run. A single process gets a timestamp.
    """
    if RUN_NAME_ENV not in environ:
        run_id = environ.get("TORCHELASTIC_RUN_ID", "none")
        if int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in environ:
            step = f".{environ['SLURM_STEP_ID']}" if "SLURM_STEP_ID" in environ else ""
            name = f"slurm-{environ['SLURM_JOB_ID']}{step}"
        elif run_id != "none":
            name = f"torchrun-{run_id[:8] if _is_uuid(run_id) else run_id}"
        elif int(environ.get("WORLD_SIZE", "1")) > 1:
            raise RunError(
                "The processes of this launch cannot agree on an unnamed run's folder (no SLURM job or torchrun "
                "run id): name the run with --run.name (make NAME=...)."
            )
        else:
            name = time.strftime("%Y%m%d-%H%M%S")
        environ[RUN_NAME_ENV] = name
    return environ[RUN_NAME_ENV]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def run_directory(settings: Namespace) -> Path:
    """The run folder of ``settings``: ``<root>/<stage>/<name>``, an unnamed run named by :func:`default_run_name`."""
    return Path(settings.root) / settings.stage / (settings.name or default_run_name())


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


def check_model_against_shards(model: LightningModule, datamodule: LightningDataModule | None) -> None:
    """Refuses a model whose ``mel_bins``, ``window_frames`` (the 200 ms audio window in mel frames) or
    ``frames_per_step`` differ from what the DataModule's shards give (their ``index.json``, and the DataModule's
    ``frames_per_step``); models and DataModules without these settings pass."""
    shards = getattr(datamodule, "shards", None)
    if shards is None:
        return
    index = read_index(shards)
    given = {
        "mel_bins": index["mel_bins"],
        "window_frames": WINDOW_MELS // MELS_PER_FRAME * index["mels_per_frame"],
        "frames_per_step": getattr(datamodule, "frames_per_step", None),
    }
    wrong = [
        f"model {name} is {model.hparams[name]} but the shards give {value}"
        for name, value in given.items()
        if value is not None and name in model.hparams and model.hparams[name] != value
    ]
    if wrong:
        raise RunError(
            f"The model does not fit the shards of {shards}/index.json: {', '.join(wrong)}; set the model to the "
            f"shards' values (or preprocess the corpus again with the new ones)."
        )


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
            record["best_monitor"] = checkpoint.monitor
            if checkpoint.best_model_score is not None:
                record["best_score"] = float(checkpoint.best_model_score)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


class RunModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` is the newest state after every validation.

    Lightning 2.6 refreshes ``last`` only when it also saves a best checkpoint, so after an epoch whose monitor
    did not improve, a rerun of the same name would resume from an older state.
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


class MACLCLI(LightningCLI):
    """LightningCLI with the project's run-folder convention (module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"callbacks": [RunRecorder()]})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunSettings, "run")
        for source, target in LINKS:
            parser.link_arguments(source, target)
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
                callback.init_args.monitor = config.run.monitor
                callback.init_args.mode = config.run.monitor_mode
        last = run_dir / "checkpoints" / "last.ckpt"
        if self.subcommand == "fit" and config.ckpt_path is None and last.is_file():
            self._check_resumable(run_dir, config)
            print(f"Resuming run {run_dir} from {last}")
            config.ckpt_path = str(last)

    def _check_resumable(self, run_dir: Path, config: Namespace) -> None:
        """Refuses to resume ``run_dir`` with a config that differs from its saved ``config.yaml`` (say, another
        ``memory``, which would end in a shape error) in more than :data:`RESUME_MAY_CHANGE`."""
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            return
        saved = yaml.safe_load(saved_path.read_text())
        current = yaml.safe_load(self._parser(self.subcommand).dump(config, skip_none=False))
        changes = config_changes(saved, current)
        if changes:
            shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
            raise RunError(
                f"Run {run_dir} was made with another config than {saved_path} ({shown}): to resume it keep its "
                f"config (--config {saved_path}), to train the new config choose a new name (--run.name, make "
                f"NAME=...), or pass --ckpt_path to resume with the new config anyway."
            )

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        check_model_against_shards(self.model, self.datamodule)


def main(args=None) -> None:
    """Entry point of ``python -m experiments.cli`` and of every stage target of the Makefile.

    A run that cannot start (:class:`RunError`, a bad shards folder or checkpoint) ends with its one sentence
    and exit status 1, without a traceback.
    """
    try:
        MACLCLI(args=args)
    except (RunError, ShardsError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if wandb.run is not None:  # so that a second run in the same process gets its own W&B run
            wandb.finish()


if __name__ == "__main__":
    main()
