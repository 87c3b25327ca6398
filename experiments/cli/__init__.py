"""The shared LightningCLI of every training stage, one concern per module.

Each run lives in ``<run.root>/<run.stage>/<run.name>/``: the resolved ``config.yaml``, ``checkpoints/``
(``last.ckpt`` and the best), the W&B files (offline unless the user is logged in) and ``metrics.json``.
``<run.root>/<run.stage>/latest`` points at the newest finished run, so the next stage finds its input
checkpoint without a path. Rerunning a name whose ``last.ckpt`` exists resumes it, once its config is checked
against the run's saved ``config.yaml``. The best checkpoint is chosen on ``run.monitor`` (each stage's yaml
names its own), and a model's settings that the shards fix (mel bins, audio window, frames per step) are
checked against the shards' ``index.json`` before training; each refusal is one sentence (:class:`RunError`), and a
run that cannot start leaves no run folder. ``--config conf/...`` is found from any working folder.

    python -m experiments.cli fit --config conf/base.yaml --config conf/trainer/cpu.yaml \\
        --config conf/sfe.yaml --run.name my-run

- :mod:`.run_names`: run folders and the name of an unnamed run under SLURM or torchrun
- :mod:`.wandb_login`: whether W&B logs online
- :mod:`.resume`: the config check before a run resumes
- :mod:`.recorder`: ``metrics.json`` and the ``latest`` link
- :mod:`.checkpointing`: the checkpoint callback whose ``last.ckpt`` is always the newest state
- :mod:`.shard_checks`: the model's settings against the shards' ``index.json``
- :mod:`.config_errors`: a bad config key as one line with the closest valid key
- :mod:`.project_files`: ``conf/`` and the project's other files from any working folder
- :mod:`.lightning_cli`: the LightningCLI that wires them, and :func:`main`
"""

from experiments.cli.checkpointing import RunModelCheckpoint
from experiments.cli.errors import RunError
from experiments.cli.lightning_cli import MACLCLI, ParseOnlyCLI, main, resolved_config
from experiments.cli.project_files import project_file
from experiments.cli.recorder import RunRecorder
from experiments.cli.resume import config_changes
from experiments.cli.run_names import RUN_NAME_ENV, default_run_name, run_directory
from experiments.cli.shard_checks import check_model_against_shards
from experiments.cli.wandb_login import wandb_logged_in

__all__ = [
    "MACLCLI",
    "ParseOnlyCLI",
    "RUN_NAME_ENV",
    "RunError",
    "RunModelCheckpoint",
    "RunRecorder",
    "check_model_against_shards",
    "config_changes",
    "default_run_name",
    "main",
    "project_file",
    "resolved_config",
    "run_directory",
    "wandb_logged_in",
]
