"""The evaluation's metric columns: names, what they mean, their direction, and how results are reported."""

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from lightning_modules.sync_scoring import SYNCNET_NOT_COMPUTED

# name -> (header, lower is better?, meaning)
COLUMNS = {
    "lmd_mouth": ("LMD mouth", True, "mean mouth-landmark distance, registered face, inter-ocular units"),
    "lmd_face": ("LMD face", True, "mean distance over all 68 landmarks, registered face, inter-ocular units"),
    "lvd": ("LVD", True, "landmark velocity distance, inter-ocular units per frame"),
    "lmd_mouth_best_of_k": ("best-of-K LMD mouth", True, "LMD mouth of the closest of K MDN samples"),
    "diversity": ("diversity", False, "mean distance between two of the K MDN samples, inter-ocular units"),
    "ssim": ("SSIM", False, "structural similarity with the true face crop (torchmetrics)"),
    "psnr": ("PSNR", False, "dB against the true face crop (torchmetrics; identical frames capped at 100)"),
    "cpbd": ("CPBD", False, "cumulative probability of blur detection on the face crop (sharpness)"),
    "upper_face_sharpness": ("upper-face sharpness", None, "variance of the Laplacian over eyes and forehead, median"),
    "upper_face_sharpness_ratio": ("sharpness / truth", None, "upper-face sharpness over the truth's (1: as sharp)"),
    "outside_change": ("change outside face", True, "mean change between frames outside the face box, 1/255 units"),
    "flicker": ("flicker", True, "mean second difference in time, |f[t+1] - 2f[t] + f[t-1]| / 2, 1/255 units"),
    "blink_rate": ("blinks/min", None, "blinks per minute (MediaPipe eye aspect ratio; people: 10-30)"),
    "mouth_sync_corr": ("mouth-audio corr", False, "weight-free: MediaPipe mouth opening vs speech energy"),
    "mouth_sync_offset": ("mouth-audio offset", None, "weight-free: frames of the audio's delay at the peak"),
    "closure_ratio": (
        "closure ratio",
        True,
        "inner-lip gap at p b m f v frames over that at open-vowel frames (0: "
        "the lips close on each; 1: they do not follow the phones); shards: the variant's landmarks, "
        "videos: MediaPipe on the frames",
    ),
    "closure_ratio_rendered": ("closure ratio, rendered", True, "the same by MediaPipe on the rendered frames"),
    "closure_ratio_static": (
        "closure, static face",
        None,
        "baseline: the reference's gap held (shards: 1 by "
        "construction, n/a when that gap is not positive); videos: the first frame repeated",
    ),
    "closure_ratio_shuffled": (
        "closure, shuffled audio",
        None,
        "baseline: shards: the same MDN driven by its audio "
        "shuffled in time (blocks of 200 ms); videos: the mouth track so shuffled",
    ),
    "closure_ratio_truth": ("closure, truth", None, "the true landmarks (shards) or the true video's (MediaPipe)"),
    "lse_d": ("LSE-D", True, "published SyncNet distance at the best offset (+-15 frames)"),
    "lse_c": ("LSE-C", False, "published SyncNet confidence (median - min distance)"),
    "expert_sync_d": ("sync-expert D", True, "the project's own SFE sync expert (not SyncNet): cosine distance"),
    "expert_sync_c": ("sync-expert C", False, "the project's own SFE sync expert (not SyncNet): confidence"),
}
SYNCNET_COLUMNS = ("lse_d", "lse_c")
EXPERT_NOT_COMPUTED = "not computed (needs a sync-expert SFE checkpoint: --sync-expert PATH)"
RENDERER_NOT_COMPUTED = "not computed (needs a renderer checkpoint: --renderer PATH)"
TRUTH_NOT_COMPUTED = "not computed (needs the true videos: --truth DIR)"
MDN_NOT_COMPUTED = "not computed (needs an MDN checkpoint)"
CLOSURE_COLUMNS = ("closure_ratio", "closure_ratio_rendered", "closure_ratio_static", "closure_ratio_shuffled",
                   "closure_ratio_truth")  # fmt: skip


def not_computed_notes(syncnet: bool, expert: bool) -> dict[str, str]:
    """Why the sync columns that need user weights or an expert run are empty, in the words the tables print."""
    notes = {}
    if not syncnet:
        notes.update(dict.fromkeys(SYNCNET_COLUMNS, SYNCNET_NOT_COMPUTED))
    if not expert:
        notes.update(dict.fromkeys(("expert_sync_d", "expert_sync_c"), EXPERT_NOT_COMPUTED))
    return notes


def commit() -> str:
    """The repository's commit (with ``+dirty`` when the work tree differs), or ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mean_metrics(items: list[dict]) -> dict[str, float]:
    """Mean of every column over the evaluated items (clips or videos), NaNs left out."""
    names = [name for name in COLUMNS if any(name in item for item in items)]
    means = {}
    for name in names:
        values = np.array([item[name] for item in items if name in item], np.float64)
        values = values[np.isfinite(values)]
        means[name] = float(values.mean()) if len(values) else float("nan")
    return means


def cell(value: float | None, note: str | None = None) -> str:
    """A table cell: the number, or the reason it was not computed."""
    if note is not None:
        return note
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def write_report(
    name: str,
    out: Path,
    metrics: dict,
    notes: dict,
    items: list[dict],
    header: dict,
    skipped: list[dict] = (),
    footnotes: list[str] = (),
) -> Path:
    """Writes ``<out>/<name>.json`` (metrics, notes, per-item values, the ``skipped`` items with their reasons,
    header, ``footnotes``) and ``<out>/<name>.md`` (the ``footnotes`` under its table)."""
    out.mkdir(parents=True, exist_ok=True)
    header = {"name": name, "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **header}
    record = {**header, "metrics": metrics, "not_computed": notes, "items": items, "skipped": list(skipped)}
    if footnotes:
        record["footnotes"] = list(footnotes)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=float, ensure_ascii=False) + "\n", "utf-8")
    shown = [column for column in COLUMNS if column in metrics or column in notes]
    lines = [f"# Evaluation {name}", "", ", ".join(f"{key}: {value}" for key, value in header.items() if key != "name")]
    lines += ["", "| metric | value | meaning |", "|---|---|---|"]
    for column in shown:
        title, lower, meaning = COLUMNS[column]
        arrow = "" if lower is None else (" (lower is better)" if lower else " (higher is better)")
        lines.append(f"| {title} | {cell(metrics.get(column), notes.get(column))} | {meaning}{arrow} |")
    if footnotes:
        lines += ["", *footnotes]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", "utf-8")
    return out / f"{name}.json"
