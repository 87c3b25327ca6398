"""``make weights``: the shipped default models, ``weights/mdn.ckpt`` and ``weights/renderer.ckpt``, from trained runs.

    python -m experiments.weights --mdn runs/mdn/demo --renderer runs/renderer/demo --out weights

Each run's best checkpoint (``lightning_modules.checkpoints.resolve_checkpoint``) is kept with what generation
needs (the weights, the hyper-parameters and the stage stamp) and without the optimiser state, and beside it
``<stage>.metrics.json``: the run's own ``metrics.json`` plus where the checkpoint came from. ``make generate``
falls back to these files when no run of the user's own exists (``experiments.generate``): ``make demo``'s smoke
runs do not count.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from lightning_modules.checkpoints import STAGE_KEY, CheckpointError, read_stage_checkpoint, resolve_checkpoint

SHIPPED = Path(__file__).resolve().parents[1] / "weights"
KEPT = ("state_dict", "hyper_parameters", STAGE_KEY, "pytorch-lightning_version", "epoch", "global_step")
EXPECTED = {"mdn": "an MDN checkpoint", "renderer": "a renderer checkpoint"}
DEMO_RUN = "demo"
"""``make demo``'s run name (the Makefile's ``DEMO_RUN``): its smoke models speak in its own video, while generation's
default prefers the shipped ones, the same recipe trained longer."""


def shipped_checkpoint(stage: str) -> Path:
    """Where the shipped checkpoint of ``stage`` (``mdn`` or ``renderer``) lives in the repository."""
    return SHIPPED / f"{stage}.ckpt"


def ship(run: str | Path, stage: str, out: Path) -> Path:
    """Writes ``out/<stage>.ckpt`` (the run's best checkpoint, slimmed) and ``out/<stage>.metrics.json``."""
    source = resolve_checkpoint(run, f"{stage} checkpoint", "train one with `make demo` or pass another run")
    checkpoint = read_stage_checkpoint(source, stage, EXPECTED[stage])
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stage}.ckpt"
    torch.save({key: checkpoint[key] for key in KEPT if key in checkpoint}, target)
    metrics_path = Path(run) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    record = {"source_run": str(run), "source_checkpoint": source.name, "metrics": metrics}
    (out / f"{stage}.metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.weights", description=__doc__.split("\n")[0])
    parser.add_argument("--mdn", help="MDN run folder or checkpoint")
    parser.add_argument("--renderer", help="renderer run folder or checkpoint")
    parser.add_argument("--out", type=Path, default=SHIPPED, help="output folder (default: the repository's weights/)")
    args = parser.parse_args(argv)
    runs = {stage: run for stage, run in (("mdn", args.mdn), ("renderer", args.renderer)) if run}
    if not runs:
        parser.error("give --mdn, --renderer or both: the runs to ship")
    try:
        for stage, run in runs.items():
            target = ship(run, stage, args.out)
            print(f"{target}: {target.stat().st_size / 1e6:.1f} MB from {run}")
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
