"""``make evaluate``: metrics of trained checkpoints over a split of the shards, or of a folder of videos.

    python -m experiments.evaluate --name mdn-test --mdn runs/mdn/latest --renderer runs/renderer/latest
    python -m experiments.evaluate --name generated --videos out/ [--truth data/corpus/synthetic/test]

Writes ``results/<name>.json`` (means, per-clip values, what was not computed and why) and ``results/<name>.md``.
The sync columns come in three kinds, named apart: LSE-D / LSE-C (the published SyncNet; only with
``--syncnet syncnet_v2.model``), the project's own sync expert (``--sync-expert``, a separate stage-1 run) and the
weight-free mouth-audio correlation (always).
"""

import argparse
import json
import sys
from pathlib import Path

from datamodules.face import NoFaceError
from datamodules.media import MediaError
from datamodules.shards import ShardsError, read_index
from experiments.evaluation.columns import (
    MDN_NOT_COMPUTED,
    RENDERER_NOT_COMPUTED,
    TRUTH_NOT_COMPUTED,
    mean_metrics,
    not_computed_notes,
    write_report,
)
from lightning_modules.checkpoints import CheckpointError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class EvaluationError(ValueError):
    """Bad evaluation input; the message is one sentence."""


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's best checkpoint (``metrics.json``), else its ``last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        metrics = path / "metrics.json"
        best = json.loads(metrics.read_text()).get("best_checkpoint") if metrics.is_file() else None
        return Path(best) if best and Path(best).is_file() else path / "checkpoints" / "last.ckpt"
    return path


def scorers(syncnet: str | None, expert: str | None):
    """The published SyncNet scorer and the project's sync expert, each when its file is given."""
    from lightning_modules.sync_scoring import SFESyncExpert, SyncNetScorer

    return (
        SyncNetScorer(syncnet) if syncnet else None,
        SFESyncExpert(checkpoint_path(expert)) if expert else None,
    )


def evaluate_videos(videos: Path, truth: Path | None, syncnet, expert) -> list[dict]:
    """Per-video metrics of every video in ``videos``; ``truth`` holds the true videos under the same names."""
    from experiments.evaluation.videos import evaluate_video

    if not videos.is_dir():
        raise EvaluationError(f"{videos} is not a folder of videos.")
    paths = sorted(path for path in videos.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise EvaluationError(f"{videos} holds no video ({', '.join(VIDEO_SUFFIXES)}).")
    items = []
    for path in paths:
        relative = path.relative_to(videos)
        true_path = None
        if truth is not None:
            matches = sorted((truth / relative.parent).glob(f"{path.stem}.*"))
            if not matches:
                raise EvaluationError(f"{truth} has no true video for {relative} (expected {truth / relative}).")
            true_path = matches[0]
        print(f"Evaluating {relative}", flush=True)
        items.append({"video": str(relative), **evaluate_video(path, true_path, syncnet, expert)})
    return items


def run(options: argparse.Namespace) -> Path:
    """Evaluates what ``options`` names and writes the report; returns the JSON path."""
    syncnet, expert = scorers(options.syncnet, options.sync_expert)
    notes = not_computed_notes(syncnet is not None, expert is not None)
    if options.videos:
        items = evaluate_videos(Path(options.videos), Path(options.truth) if options.truth else None, syncnet, expert)
        header = {"source": f"videos {options.videos}", "truth": options.truth or "none"}
        if not options.truth:
            notes.update(dict.fromkeys(("ssim", "psnr", "lmd_mouth", "lmd_face", "lvd"), TRUTH_NOT_COMPUTED))
    else:
        from experiments.evaluation.split import evaluate_split

        read_index(options.data)  # a missing or foreign shards folder fails here, with its one sentence
        mdn = renderer = None
        if options.variant == "model":
            if not options.mdn:
                raise EvaluationError("Evaluating the model variant needs --mdn (an MDN checkpoint or run folder).")
            from lightning_modules.mdn import load_landmark_mdn

            mdn = load_landmark_mdn(checkpoint_path(options.mdn))
        if options.renderer:
            from lightning_modules.renderer import load_face_renderer

            renderer = load_face_renderer(checkpoint_path(options.renderer))
        items = evaluate_split(
            options.data, options.variant, mdn, renderer, options.split, options.samples, syncnet, expert, options.limit
        )
        if options.variant != "model":
            notes.update(dict.fromkeys(("lmd_mouth_best_of_k", "diversity"), MDN_NOT_COMPUTED))
        if renderer is None and options.variant != "static":
            image_columns = ("ssim", "psnr", "cpbd", "mouth_sync_corr", "mouth_sync_offset", "lse_d", "lse_c")
            notes.update(dict.fromkeys((*image_columns, "expert_sync_d", "expert_sync_c"), RENDERER_NOT_COMPUTED))
        header = {
            "source": f"{options.split} split of {options.data}",
            "variant": options.variant,
            "mdn": str(checkpoint_path(options.mdn)) if mdn is not None else "none",
            "renderer": str(checkpoint_path(options.renderer)) if renderer is not None else "none",
        }
    header["sync_expert"] = str(expert.path) if expert is not None else "none"
    header["clips"] = len(items)
    return write_report(options.name, Path(options.out), mean_metrics(items), notes, items, header)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="report name: results/<name>.json and .md")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--videos", help="a folder of generated videos, each with its audio track")
    source.add_argument("--data", default="data/shards/synthetic", help="shards whose split is evaluated")
    parser.add_argument("--truth", help="with --videos: a folder with the true videos under the same names")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--variant", default="model", choices=["model", "static", "truth"], help="landmark source")
    parser.add_argument("--mdn", help="MDN checkpoint or run folder (the model variant)")
    parser.add_argument("--renderer", help="renderer checkpoint or run folder (frames for the image metrics)")
    parser.add_argument("--samples", type=int, default=5, help="K of best-of-K LMD and diversity")
    parser.add_argument("--syncnet", help="published SyncNet weights (syncnet_v2.model) for LSE-D / LSE-C")
    parser.add_argument("--sync-expert", help="a separate stage-1 SFE run or checkpoint used as the sync expert")
    parser.add_argument("--limit", type=int, help="evaluate only the first N clips of the split")
    parser.add_argument("--out", default="results", help="folder of the reports")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        path = run(options)
    except (EvaluationError, CheckpointError, ShardsError, MediaError, NoFaceError) as error:
        print(error, file=sys.stderr)
        return 2
    print(Path(path).with_suffix(".md").read_text())
    print(f"Wrote {path} and {Path(path).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
