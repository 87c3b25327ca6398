"""``make evaluate``: metrics of trained checkpoints over a split of the shards, or of a folder of videos.

    python -m experiments.evaluate --name mdn-test --mdn runs/mdn/latest --renderer runs/renderer/latest
    python -m experiments.evaluate --name generated --videos out/ [--truth data/corpus/synthetic/test]

Writes ``results/<name>.json`` (means, per-clip values, what was not computed and why) and ``results/<name>.md``.
The sync columns come in three kinds, named apart: LSE-D / LSE-C (the published SyncNet; only with
``--syncnet syncnet_v2.model``), the project's own sync expert (``--sync-expert``, a separate stage-1 run) and the
weight-free mouth-audio correlation (always). The closure ratio (inner-lip gap at p b m f v over open vowels) stands
beside its baselines, a static face, time-shuffled audio and the truth; its phones come from the clips' sidecars
(the embedded corpus) or pocketsphinx (any other audio), and the report says which frames it counted.

``--data`` is a shards folder or a URL (``s3://bucket/prefix``, as for training). A video of ``--videos`` that cannot
be read or has no face is skipped: the others are scored, the report lists each skipped video with its reason under
``skipped``, and the command exits with status 2. LSE-D / LSE-C of the shards read the clips' audio from the raw
corpus that ``make data`` read (``--raw`` when it has moved since).
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from datamodules.face import NoFaceError
from datamodules.media import MediaError
from datamodules.shards import ShardsError, raw_corpus, read_index
from experiments.evaluation.columns import (
    CLOSURE_COLUMNS,
    MDN_NOT_COMPUTED,
    RENDERER_NOT_COMPUTED,
    TRUTH_NOT_COMPUTED,
    mean_metrics,
    not_computed_notes,
    write_report,
)
from lightning_modules.checkpoints import CheckpointError, resolve_checkpoint

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class EvaluationError(ValueError):
    """Bad evaluation input; the message is one sentence."""


def scorers(syncnet: str | None, expert: str | None):
    """The published SyncNet scorer and the project's sync expert, each when its file is given."""
    from lightning_modules.sync_scoring import SFESyncExpert, SyncNetScorer

    return (
        SyncNetScorer(syncnet) if syncnet else None,
        SFESyncExpert(resolve_checkpoint(expert, "sync-expert SFE checkpoint")) if expert else None,
    )


def evaluate_videos(videos: Path, truth: Path | None, syncnet, expert) -> tuple[list[dict], list[dict]]:
    """Per-video metrics of every video in ``videos`` that can be scored, and ``{"video", "reason"}`` of each one
    that cannot (unreadable, no face); ``truth`` holds the true videos under the same names. EvaluationError when
    no video can be scored."""
    from experiments.evaluation.videos import evaluate_video

    if not videos.is_dir():
        raise EvaluationError(f"{videos} is not a folder of videos.")
    paths = sorted(path for path in videos.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise EvaluationError(f"{videos} holds no video ({', '.join(VIDEO_SUFFIXES)}).")
    items, skipped = [], []
    for path in paths:
        relative = path.relative_to(videos)
        true_path = None
        if truth is not None:
            matches = sorted((truth / relative.parent).glob(f"{path.stem}.*"))
            if not matches:
                raise EvaluationError(f"{truth} has no true video for {relative} (expected {truth / relative}).")
            true_path = matches[0]
        print(f"Evaluating {relative}", flush=True)
        try:
            items.append({"video": str(relative), **evaluate_video(path, true_path, syncnet, expert)})
        except (MediaError, NoFaceError) as error:
            print(f"Skipped {relative}: {error}", flush=True)
            skipped.append({"video": str(relative), "reason": str(error)})
    if not items:
        reasons = "; ".join(entry["reason"] for entry in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise EvaluationError(reasons if len(skipped) == 1 else f"No video of {videos} could be scored: {reasons}")
    return items, skipped


def closure_report(items: list[dict]) -> tuple[dict[str, str], list[str]]:
    """Why the closure columns are empty when no item has phones, else the report's footnote: which frames the
    ratio compares, how many there were, and where the phones came from."""
    from experiments.evaluation.closure import FRAMES_COUNTED

    sources = Counter(str(item.get("closure_phones", "no phones")) for item in items)
    measured = [item for item in items if "closure_ratio" in item]
    if not measured:
        return dict.fromkeys(CLOSURE_COLUMNS, f"not computed (no phones: {'; '.join(sorted(sources))})"), []
    closing, opened = (int(sum(item[key] for item in measured)) for key in ("closing_frames", "open_frames"))
    scored = sum(bool(np.isfinite(item["closure_ratio"])) for item in measured)
    found = ", ".join(f"{source} ({count})" for source, count in sources.most_common())
    footnote = (
        f"Closure ratio: the mean inner-lip gap at closing frames over that at open frames, per clip, then the mean "
        f"over clips; {FRAMES_COUNTED}. {closing} closing and {opened} open frames in the {len(measured)} of "
        f"{len(items)} clips with phones, {scored} of them with both kinds (a ratio); phones: {found}."
    )
    return {}, [footnote]


def run(options: argparse.Namespace) -> tuple[Path, list[dict]]:
    """Evaluates what ``options`` names and writes the report; returns the JSON path and the skipped videos."""
    if not options.videos:
        index = read_index(options.data)  # a missing or foreign shards folder fails here, with its one sentence
        if options.syncnet:
            raw_corpus(options.data, index, options.raw)  # LSE needs the clips' audio: say so before any work
    syncnet, expert = scorers(options.syncnet, options.sync_expert)
    notes = not_computed_notes(syncnet is not None, expert is not None)
    skipped = []
    if options.videos:
        truth = Path(options.truth) if options.truth else None
        items, skipped = evaluate_videos(Path(options.videos), truth, syncnet, expert)
        header = {"source": f"videos {options.videos}", "truth": options.truth or "none"}
        if not options.truth:
            truth_columns = ("ssim", "psnr", "lmd_mouth", "lmd_face", "lvd", "closure_ratio_truth")
            notes.update(dict.fromkeys(truth_columns, TRUTH_NOT_COMPUTED))
    else:
        from experiments.evaluation.split import evaluate_split

        mdn_path = renderer_path = mdn = renderer = None
        if options.variant == "model":
            if not options.mdn:
                raise EvaluationError("Evaluating the model variant needs --mdn (an MDN checkpoint or run folder).")
            from lightning_modules.mdn import load_landmark_mdn

            mdn_path = resolve_checkpoint(options.mdn, "MDN checkpoint")
            mdn = load_landmark_mdn(mdn_path)
        if options.renderer:
            from lightning_modules.renderer import load_face_renderer

            renderer_path = resolve_checkpoint(options.renderer, "renderer checkpoint")
            renderer = load_face_renderer(renderer_path)
        items = evaluate_split(
            options.data, options.variant, mdn, renderer, options.split, options.samples, syncnet, expert,
            options.limit, options.raw,
        )  # fmt: skip
        if options.variant != "model":
            model_columns = ("lmd_mouth_best_of_k", "diversity", "closure_ratio_shuffled")
            notes.update(dict.fromkeys(model_columns, MDN_NOT_COMPUTED))
        if renderer is None and options.variant != "static":
            image_columns = ("ssim", "psnr", "cpbd", "mouth_sync_corr", "mouth_sync_offset", "closure_ratio_rendered",
                             "lse_d", "lse_c")  # fmt: skip
            notes.update(dict.fromkeys((*image_columns, "expert_sync_d", "expert_sync_c"), RENDERER_NOT_COMPUTED))
        header = {
            "source": f"{options.split} split of {options.data}",
            "variant": options.variant,
            "mdn": str(mdn_path or "none"),
            "renderer": str(renderer_path or "none"),
        }
    header["sync_expert"] = str(expert.path) if expert is not None else "none"
    header["clips"] = len(items)
    if skipped:
        header["skipped"] = f"{len(skipped)} ({', '.join(entry['video'] for entry in skipped)}; reasons in the JSON)"
    closure_notes, footnotes = closure_report(items)
    notes.update(closure_notes)
    metrics = mean_metrics(items)
    report = write_report(options.name, Path(options.out), metrics, notes, items, header, skipped, footnotes)
    return report, skipped


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
    parser.add_argument("--raw", help="the raw corpus the shards were made from, when it has moved (LSE's audio)")
    parser.add_argument("--out", default="results", help="folder of the reports")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        path, skipped = run(options)
    except (EvaluationError, CheckpointError, ShardsError, MediaError, NoFaceError) as error:
        print(error, file=sys.stderr)
        return 2
    print(Path(path).with_suffix(".md").read_text())
    print(f"Wrote {path} and {Path(path).with_suffix('.md')}")
    if skipped:
        listed = "; ".join(f"{entry['video']} ({entry['reason']})" for entry in skipped)
        print(f"error: {len(skipped)} video(s) could not be scored and are not in the means: {listed}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
