"""Run folders and their names: ``<root>/<stage>/<name>/``, and the name of an unnamed run that every process of one
launch (SLURM, torchrun, Lightning's own DDP children) agrees on."""

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jsonargparse import Namespace

from experiments.cli.errors import RunError

RUN_NAME_ENV = "MACL_RUN_NAME"


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
