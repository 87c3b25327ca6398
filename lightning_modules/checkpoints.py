"""Checking a checkpoint that one stage hands to another, with one clear sentence when it is wrong.

Every stage's LightningModule stamps its checkpoints with :data:`STAGE_KEY` (:func:`stamp_stage`); a stage
that rebuilds a net from another stage's checkpoint reads it with :func:`read_stage_checkpoint`, takes
the net's constructor arguments with :func:`constructor_arguments` (after
:func:`with_default_hyperparameters` for checkpoints older than an optional argument) and loads its weights with
:func:`load_sub_state_dict`, each of which raises :class:`CheckpointError` naming the file, what was
expected and what was found. :func:`resolve_checkpoint` is the one place where a run folder becomes its checkpoint
file (generation, evaluation, tables and the Makefile's ``SFE_CKPT`` all go through it):

    python -m lightning_modules.checkpoints runs/sfe/latest   # prints the file, or one sentence and exit 1
"""

import argparse
import inspect
import json
import pickle
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

STAGE_KEY = "macl_stage"
"""Checkpoint entry holding ``{"stage": ..., "module": ...}`` of the LightningModule that wrote it."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not the one the caller expected."""


def resolve_checkpoint(path: str | Path, what: str = "checkpoint", remedy: str = "") -> Path:
    """The checkpoint file that ``path`` names: the file itself, or in a run folder (such as ``runs/<stage>/latest``)
    the best checkpoint that its ``metrics.json`` names, else ``checkpoints/last.ckpt``.

    The best checkpoint is looked up by its name in the folder's own ``checkpoints/``, so a run folder that was moved
    or copied (or is read from another working directory) still gives its own best, never a file at the path where
    it was written. ``what`` and ``remedy`` complete the one sentence of the CheckpointError raised when there is no
    such file, e.g. ``"SFE checkpoint"`` and ``"train one with `make pretrain-sfe`"``.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        best = _recorded_best(path)
        candidates = [path / "checkpoints" / best] if best else []
        for candidate in [*candidates, path / "checkpoints" / "last.ckpt"]:
            if candidate.is_file():
                return candidate
    raise CheckpointError(f"No {what} at {path}" + (f"; {remedy}." if remedy else "."))


def _recorded_best(run: Path) -> str | None:
    """The file name of the best checkpoint that ``run/metrics.json`` records; None when it records none."""
    metrics = run / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        record = json.loads(metrics.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{metrics} is not valid JSON ({error}): delete it to use {run / 'checkpoints' / 'last.ckpt'}, or pass a "
            f"checkpoint file instead of the run folder."
        ) from None
    if not isinstance(record, Mapping):
        raise CheckpointError(
            f"{metrics} holds a {type(record).__name__}, not a record of the run: delete it to use "
            f"{run / 'checkpoints' / 'last.ckpt'}, or pass a checkpoint file instead of the run folder."
        )
    best = record.get("best_checkpoint")
    return Path(best).name if isinstance(best, str) and best else None


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


def file_contents(path: Path, error: Exception) -> str:
    """What a file that ``torch.load`` refused holds, in words (``error`` is what torch.load raised)."""
    size = path.stat().st_size
    if size == 0:
        return "nothing (an empty file)"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith("data.pkl") for name in names):
            if isinstance(error, pickle.UnpicklingError):
                return "Python objects other than tensors and plain data (a pickled model, not a Lightning checkpoint)"
            return f"a damaged PyTorch archive ({type(error).__name__})"
        return f"a zip archive of {len(names)} files without PyTorch data"
    head = path.read_bytes()[:64]
    if head.startswith(b"PK"):
        return f"a truncated PyTorch archive ({size} bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{size} bytes of data in no PyTorch format"
    return f"{size} bytes of text beginning {text.strip()[:32]!r}"


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
        raise CheckpointError(
            f"Checkpoint {path} cannot be read as a PyTorch checkpoint: it holds {file_contents(path, error)}; "
            f"expected {expected}."
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


def main(argv: list[str] | None = None) -> int:
    """Prints the checkpoint file of a checkpoint or run folder (:func:`resolve_checkpoint`); the Makefile's lookup."""
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.checkpoints", description=main.__doc__)
    parser.add_argument("path", help="a checkpoint file or a run folder")
    parser.add_argument("--what", default="checkpoint", help="what the path should hold, for the error sentence")
    parser.add_argument("--remedy", default="", help="what to do when there is none, for the error sentence")
    options = parser.parse_args(argv)
    try:
        print(resolve_checkpoint(options.path, options.what, options.remedy))
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
