"""Checking a checkpoint that one stage hands to another, with one clear sentence when it is wrong.

Every stage's LightningModule stamps its checkpoints with :data:`STAGE_KEY` (:func:`stamp_stage`); a stage
that rebuilds a net from another stage's checkpoint reads it with :func:`read_stage_checkpoint`, takes
the net's constructor arguments with :func:`constructor_arguments` (after
:func:`with_default_hyperparameters` for checkpoints older than an optional argument) and loads its weights with
:func:`load_sub_state_dict`, each of which raises :class:`CheckpointError` naming the file, what was
expected and what was found.
"""

import inspect
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

STAGE_KEY = "macl_stage"
"""Checkpoint entry holding ``{"stage": ..., "module": ...}`` of the LightningModule that wrote it."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not the one the caller expected."""


def read_run_metrics(run_dir: str | Path) -> dict:
    """The ``metrics.json`` record of a run folder (empty when there is none); CheckpointError, with how to recover,
    when it is not a JSON object (cut short, or edited by hand)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path} is corrupt (not the JSON object a run writes); delete it to use the run's "
            f"checkpoints/last.ckpt, or pass a .ckpt file itself."
        )
    return record


def stamp_stage(checkpoint: dict, stage: str, module: type) -> None:
    """Records the stage and the LightningModule class in a checkpoint (call from ``on_save_checkpoint``)."""
    checkpoint[STAGE_KEY] = {"stage": stage, "module": f"{module.__module__}.{module.__qualname__}"}


def describe(checkpoint: object) -> str:
    """What a loaded checkpoint is, in words: its module or stage, hyper-parameter names and top-level weights."""
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        entries = f" with entries {', '.join(map(str, checkpoint))}" if isinstance(checkpoint, Mapping) else ""
        return f"a {type(checkpoint).__name__}{entries} and no Lightning state_dict"
    hparams = checkpoint.get("hyper_parameters") or {}
    stamp = checkpoint.get(STAGE_KEY) or {}
    module = stamp.get("module") or hparams.get("_class_path") or "an unrecorded LightningModule"
    stage = f" (stage {stamp['stage']!r})" if "stage" in stamp else ""
    names = sorted(name for name in hparams if not name.startswith("_"))
    submodules = sorted({str(name).split(".")[0] for name in checkpoint["state_dict"]})
    return (
        f"a checkpoint of {module}{stage} with hyper-parameters {', '.join(names) or 'none'}"
        f" and weights of {', '.join(submodules) or 'nothing'}"
    )


def read_stage_checkpoint(path: str | Path, stage: str, expected: str) -> dict:
    """Loads ``path`` on the CPU and checks that a LightningModule of ``stage`` wrote it.

    ``expected`` names what the caller wants, e.g. ``"an SFE checkpoint (lightning_modules.sfe.SFEPretraining)"``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist: expected {expected}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many kinds (pickle, zip, EOF, runtime) for a bad file
        reason = str(error).strip().split("\n")[0].split(". ")[0].rstrip(".") or type(error).__name__
        raise CheckpointError(
            f"Checkpoint {path} cannot be read as a PyTorch checkpoint ({reason}): expected {expected}."
        ) from error
    found_stage = (checkpoint.get(STAGE_KEY) or {}).get("stage") if isinstance(checkpoint, Mapping) else None
    if found_stage != stage or "state_dict" not in checkpoint:
        raise CheckpointError(f"Checkpoint {path} is not {expected}: it is {describe(checkpoint)}.")
    return checkpoint


def constructor_arguments(net: type[nn.Module], checkpoint: dict, path: str | Path, expected: str) -> dict:
    """The checkpoint's hyper-parameters that ``net``'s constructor takes; every one of them must be there."""
    parameters = [name for name in inspect.signature(net).parameters if name not in {"self", "args", "kwargs"}]
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [name for name in parameters if name not in hparams]
    if missing:
        raise CheckpointError(
            f"Checkpoint {path} is not {expected}: it lacks the {net.__name__} hyper-parameters "
            f"{', '.join(missing)} (it is {describe(checkpoint)})."
        )
    return {name: hparams[name] for name in parameters}


def with_default_hyperparameters(checkpoint: dict, module: type, names: tuple[str, ...]) -> dict:
    """The checkpoint with the hyper-parameters ``names`` of ``module`` that it lacks set to the constructor's
    defaults: arguments added after checkpoints were written. The checkpoint itself is unchanged."""
    parameters = inspect.signature(module).parameters
    defaults = {name: parameters[name].default for name in names}
    return {**checkpoint, "hyper_parameters": {**defaults, **(checkpoint.get("hyper_parameters") or {})}}


def _listing(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_sub_state_dict(net: nn.Module, checkpoint: dict, prefix: str, path: str | Path, expected: str) -> None:
    """Loads the ``prefix``-named part of the checkpoint's ``state_dict`` into ``net``; every key must fit."""
    state = {
        name.removeprefix(prefix): value for name, value in checkpoint["state_dict"].items() if name.startswith(prefix)
    }
    own = net.state_dict()
    problems = {
        "missing": sorted(own.keys() - state.keys()),
        "unexpected": sorted(state.keys() - own.keys()),
        "of another shape": sorted(name for name in own.keys() & state.keys() if own[name].shape != state[name].shape),
    }
    found = "; ".join(f"{kind}: {_listing(names)}" for kind, names in problems.items() if names)
    if found:
        raise CheckpointError(
            f"Checkpoint {path} is not {expected}: its {prefix!r} weights do not fit {type(net).__name__} ({found})."
        )
    net.load_state_dict(state)
