"""The shared LightningCLI of every training stage (:class:`MACLCLI`) and its entry point (:func:`main`)."""

import os
import shutil
import sys
from argparse import ArgumentError
from pathlib import Path

import wandb
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules.shards import ShardsError
from experiments.cli.config_errors import ConfigError, config_error_message
from experiments.cli.errors import RunError
from experiments.cli.project_files import project_file
from experiments.cli.recorder import RunRecorder
from experiments.cli.resume import check_resumable
from experiments.cli.run_names import RunSettings, run_directory
from experiments.cli.shard_checks import check_model_against_shards
from experiments.cli.wandb_login import wandb_logged_in
from lightning_modules.checkpoints import CheckpointError

LINKS = [("data.init_args.step_stride", "model.init_args.step_stride")]
"""Data settings that the model records (so the next stage knows them): linked when both classes take them."""
CANNOT_START = (RunError, ShardsError, CheckpointError)  # a bad config key is a RunError (ConfigError)
"""Errors that mean a run cannot start as configured: one sentence, exit status 1, and no run folder left."""


def _class_configs(value) -> list[Namespace]:
    """The ``class_path``/``init_args`` entries of a trainer option that may be one, a list, or a bool."""
    entries = value if isinstance(value, list) else [value]
    return [entry for entry in entries if isinstance(entry, Namespace) and "class_path" in entry]


class MACLCLI(LightningCLI):
    """LightningCLI with the project's run-folder convention (package docstring).

    ``new_run_dirs``, when given, receives each run folder that this CLI is about to create (it did not exist), so
    that :func:`main` can remove it when the run cannot start.
    """

    def __init__(self, *args, new_run_dirs: list[Path] | None = None, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"callbacks": [RunRecorder()]})
        self.new_run_dirs = new_run_dirs if new_run_dirs is not None else []
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parses as LightningCLI does; a config key that does not exist is a ConfigError naming the closest valid key
        (with ``parser_kwargs={"exit_on_error": False}``; else jsonargparse prints its usage and exits)."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            raise ConfigError(config_error_message(error, parser)) from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunSettings, "run")
        for source, target in LINKS:
            parser.link_arguments(source, target)
        # Stage 2 normalises with the train split's statistics (index.json); skipped for data without them.
        parser.link_arguments("data.statistics", "model.init_args.statistics", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = run_directory(config.run)
        if not run_dir.exists():
            self.new_run_dirs.append(run_dir)
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
            check_resumable(run_dir, yaml.safe_load(self._parser(self.subcommand).dump(config, skip_none=False)))
            print(f"Resuming run {run_dir} from {last}")
            config.ckpt_path = str(last)

    def instantiate_classes(self) -> None:
        """Builds the classes as LightningCLI does; a class that refuses its arguments with one of
        :data:`CANNOT_START` (a bad checkpoint, shards folder) ends with that sentence, not with jsonargparse's
        chained tracebacks and a dump of the config."""
        try:
            super().instantiate_classes()
        except Exception as error:
            reason = _cause(error, CANNOT_START)
            if reason is None:
                raise
            raise reason from None

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        check_model_against_shards(self.model, self.datamodule)


def _cause(error: BaseException, kinds: tuple[type[Exception], ...]) -> BaseException | None:
    """The first exception of ``kinds`` in the chain of causes of ``error`` (``error`` itself first)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class ParseOnlyCLI(MACLCLI):
    """Parses and checks a config against the classes' signatures and builds nothing."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def resolved_config(args: list[str]) -> dict:
    """The whole config that ``fit`` with ``args`` would run (every default filled in), as plain data; nothing is
    built. Config files are found as :func:`main` finds them."""
    cli = ParseOnlyCLI(args=with_project_configs(args), run=False, parser_kwargs={"exit_on_error": False})
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))


def with_project_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config`` file found from any working folder (:func:`project_file`)."""
    found, expect_config = [], False
    for arg in args:
        if expect_config:
            arg = str(project_file(arg))
        elif arg.startswith("--config="):
            arg = f"--config={project_file(arg.removeprefix('--config='))}"
        expect_config = arg == "--config"
        found.append(arg)
    return found


def _remove_unstarted(run_dirs: list[Path]) -> None:
    """Removes the run folders this launch created when no checkpoint was written in them (a run that did not
    start leaves nothing behind), on the main process only."""
    if int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) != 0:
        return
    for run_dir in run_dirs:
        if run_dir.is_dir() and not any((run_dir / "checkpoints").glob("*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m experiments.cli`` and of every stage target of the Makefile.

    A run that cannot start (:data:`CANNOT_START`: a bad config key, shards folder or checkpoint) ends with its one
    sentence and exit status 1, without a traceback, and leaves no run folder behind.
    """
    new_run_dirs = []
    try:
        if args is None:  # LightningCLI reads sys.argv itself (and warns when given both)
            sys.argv[1:] = with_project_configs(sys.argv[1:])
        else:
            args = with_project_configs(args)
        MACLCLI(args=args, new_run_dirs=new_run_dirs, parser_kwargs={"exit_on_error": False})
    except CANNOT_START as error:
        _finish_wandb()  # before its folder goes, and so that the sentence is the last line
        _remove_unstarted(new_run_dirs)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    """Ends this process's W&B run, so that a second run in the same process gets its own."""
    if wandb.run is not None:
        wandb.finish()
