"""Preprocessing: the clips of a corpus -> per-clip records -> LitData shards, one dataset per split.

``SHARDS/`` holds:

    workers.log         what MediaPipe's native code printed in the worker processes
    manifest.jsonl      one line per clip: clip, speaker, split, status (ok|skipped), reason, frames, face_ratio
    clips/<clip>.pkl    the processed record of each usable clip: what a rerun does not redo
    clips/<clip>.sums.npz  its share of the train-split statistics (``datamodules.statistics``)
    train/ val/ test/   LitData datasets (``litdata.optimize``), one sample per clip (``RECORD_KEYS``)
    index.json          speakers, the clip ids of each split, each clip's frame count (``clip_frames``), the
                        train-split ``statistics``, the data-contract constants; written last

Clips are processed in parallel (``workers`` processes) and each record is written atomically, so an
interrupted run loses at most the clips in flight; a rerun processes only the clips without a manifest line
and repackages only the splits whose clip list changed. A corrupt or truncated video, a video without audio,
a clip shorter than 1 s, silent audio or a clip without a face (in fewer than 80% of its frames) is skipped
with its reason in the manifest; one bad clip never stops the run.
"""

import argparse
import json
import multiprocessing
import os
import pickle
import shutil
import sys
from pathlib import Path

import litdata
import numpy as np
from tqdm import tqdm

from datamodules import face
from datamodules.audio import MEL_BINS, MELS_PER_FRAME, mel_spectrogram
from datamodules.corpus import LAYOUTS, SPLITS, Clip, CorpusError, discover
from datamodules.media import FPS, SAMPLE_RATE, MediaError, read_clip
from datamodules.statistics import read_record_storing_sums, train_statistics

MIN_SECONDS = 1.0
SILENCE_PEAK = 1e-4  # audio whose absolute peak stays below this is silent
RECORD_KEYS = (
    "clip",  # str, clip id
    "speaker",  # str
    "split",  # str
    "frames",  # int T
    "mel",  # float16 [4T, 80]
    "landmarks",  # float32 [T, 68, 3], face-crop pixels (256 x 256)
    "registered",  # float32 [T, 68, 3], canonical frame
    "pose",  # float32 [T, 6]: axis-angle (3), translation in face-crop pixels (2), log-scale (1); absolute
    "face_detected",  # uint8 [T], 1 where Face Mesh found the face
    "valid",  # uint8 [T], detected or inside a gap of at most 5 frames
    "reference_index",  # int, the valid frame with the most closed mouth
    "face_jpeg",  # uint8 [bytes] and face_offsets int64 [T + 1]: 256 x 256 aligned face crops
    "face_offsets",
    "mouth_jpeg",  # uint8 [bytes] and mouth_offsets int64 [T + 1]: 96 x 96 mouth crops
    "mouth_offsets",
    "face_box",  # float32 [3]: centre x, centre y, side of the face crop box in source pixels (face.CropBox)
    "source_size",  # int64 [2]: height, width of the source frames (to paste a crop back)
)


class ClipSkipped(Exception):
    """A clip that cannot be used; the message is the manifest's reason."""


def process_clip(clip: Clip) -> dict:
    """The shard record of one clip (``RECORD_KEYS``); raises ClipSkipped with the reason when it is unusable."""
    try:
        frames, audio = read_clip(clip.path)  # [T, H, W, 3], [N]
    except MediaError as error:
        raise ClipSkipped(str(error)) from error
    seconds = len(frames) / FPS
    if seconds < MIN_SECONDS or len(audio) < MIN_SECONDS * SAMPLE_RATE:
        raise ClipSkipped(f"shorter than {MIN_SECONDS:g} s ({min(seconds, len(audio) / SAMPLE_RATE):.2f} s)")
    if np.abs(audio).max() < SILENCE_PEAK:
        raise ClipSkipped("the audio track is silent")
    landmarks, detected = face.track_landmarks(frames)
    if detected.mean() < face.MIN_FACE_RATIO:
        raise ClipSkipped(f"a face in only {detected.mean():.0%} of the frames (at least 80% needed)")
    landmarks, valid = face.fill_gaps(landmarks, detected)
    face_box = face.face_crop_box(landmarks, valid)
    crop_landmarks = face_box.to_crop(landmarks, face.FACE_CROP_SIZE)
    registered, pose = face.register(crop_landmarks)
    face_jpeg, face_offsets = face.encode_jpeg([face_box.cut(frame, face.FACE_CROP_SIZE) for frame in frames])
    mouth_boxes = face.mouth_crop_boxes(landmarks)
    mouth_jpeg, mouth_offsets = face.encode_jpeg(
        [box.cut(frame, face.MOUTH_CROP_SIZE) for box, frame in zip(mouth_boxes, frames, strict=True)]
    )
    return {
        "clip": clip.clip_id,
        "speaker": clip.speaker,
        "split": clip.split,
        "frames": len(frames),
        "mel": mel_spectrogram(audio, len(frames)).astype(np.float16),
        "landmarks": crop_landmarks,
        "registered": registered,
        "pose": pose,
        "face_detected": detected.astype(np.uint8),
        "valid": valid.astype(np.uint8),
        "reference_index": face.reference_index(registered, valid),
        "face_jpeg": face_jpeg,
        "face_offsets": face_offsets,
        "mouth_jpeg": mouth_jpeg,
        "mouth_offsets": mouth_offsets,
        "face_box": face_box.as_array(),
        "source_size": np.array(frames.shape[1:3], np.int64),
    }


def _record_path(shards: Path, clip_id: str) -> Path:
    return shards / "clips" / f"{clip_id}.pkl"


def _process_and_store(job: tuple[Clip, Path]) -> dict:
    """Worker: processes one clip, writes its record atomically, returns its manifest line."""
    clip, shards = job
    entry = {"clip": clip.clip_id, "speaker": clip.speaker, "split": clip.split}
    try:
        record = process_clip(clip)
    except ClipSkipped as skipped:
        return {**entry, "status": "skipped", "reason": str(skipped), "frames": 0, "face_ratio": 0.0}
    except Exception as error:  # a clip must never stop the corpus: record it and go on
        reason = f"unexpected {type(error).__name__}: {error}"
        return {**entry, "status": "skipped", "reason": reason, "frames": 0, "face_ratio": 0.0}
    path = _record_path(shards, clip.clip_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as stream:
        pickle.dump(record, stream, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)
    face_ratio = float(record["face_detected"].mean())
    return {**entry, "status": "ok", "reason": "", "frames": record["frames"], "face_ratio": round(face_ratio, 4)}


def _send_native_logs_to(path: str) -> None:
    """Worker start-up: MediaPipe's C++ side writes to file descriptor 2 from its own threads; send that to a
    log file so the progress bar stays readable (Python errors still reach the manifest)."""
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)


def read_manifest(shards: str | Path) -> dict[str, dict]:
    """The manifest of a shards folder by clip id (the last line of a clip wins)."""
    path = Path(shards) / "manifest.jsonl"
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            entries[entry["clip"]] = entry
    return entries


def interleave_speakers(entries: list[dict]) -> list[str]:
    """Clip ids ordered round-robin over speakers (each speaker's clips in id order), so that the unshuffled
    batches of validation and test mix speakers, as identity metrics need, instead of holding one speaker."""
    by_speaker: dict[str, list[str]] = {}
    for entry in sorted(entries, key=lambda entry: entry["clip"]):
        by_speaker.setdefault(entry["speaker"], []).append(entry["clip"])
    rounds = max((len(clips) for clips in by_speaker.values()), default=0)
    return [clips[turn] for turn in range(rounds) for clips in by_speaker.values() if turn < len(clips)]


def _package_split(shards: Path, split: str, clip_ids: list[str]) -> None:
    """Writes the LitData dataset of one split from the stored records, replacing the old one at the end."""
    target = shards / split
    staging = shards / f".{split}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    if not clip_ids:
        return
    litdata.optimize(
        fn=read_record_storing_sums,
        inputs=[str(_record_path(shards, clip_id)) for clip_id in clip_ids],
        output_dir=str(staging),
        num_workers=1,
        chunk_bytes="64MB",
        reorder_files=False,
        keep_data_ordered=True,
        verbose=False,
        # Packaging only unpickles records: forking is safe here and saves seconds of interpreter start-up.
        start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
    )
    os.replace(staging, target)


def preprocess(
    raw: str | Path, layout: str, shards: str | Path, workers: int = 2, val_fraction: float = 0.1, progress=True
) -> dict:
    """Processes the clips of ``raw`` not yet in ``shards``' manifest and (re)packages the changed splits.

    Returns a summary: clips found, processed now, ok and skipped in all, and the clip count per split.
    ``workers=0`` processes in this process (for debugging).
    """
    shards = Path(shards)
    clips = discover(raw, layout, val_fraction)
    shards.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(shards)
    pending = [
        clip
        for clip in clips
        if clip.clip_id not in manifest
        or manifest[clip.clip_id]["split"] != clip.split
        or (manifest[clip.clip_id]["status"] == "ok" and not _record_path(shards, clip.clip_id).exists())
    ]
    jobs = [(clip, shards) for clip in pending]
    bar = tqdm(total=len(jobs), desc=f"preprocess {shards.name}", unit="clip", disable=not progress or not jobs)
    skipped = sum(entry["status"] == "skipped" for entry in manifest.values())
    with open(shards / "manifest.jsonl", "a") as manifest_file:

        def record(entry: dict) -> None:
            nonlocal skipped
            previous = manifest.get(entry["clip"], {"status": "new"})
            skipped += (entry["status"] == "skipped") - (previous["status"] == "skipped")
            manifest[entry["clip"]] = entry
            manifest_file.write(json.dumps(entry) + "\n")
            manifest_file.flush()
            bar.update()
            bar.set_postfix(skipped=skipped)

        if workers == 0:
            for job in jobs:
                record(_process_and_store(job))
        elif jobs:
            pool = multiprocessing.get_context("spawn").Pool(
                min(workers, len(jobs)), initializer=_send_native_logs_to, initargs=(str(shards / "workers.log"),)
            )
            with pool:
                for entry in pool.imap_unordered(_process_and_store, jobs):
                    record(entry)
    bar.close()

    current = {clip.clip_id for clip in clips}
    usable = sorted(
        (entry for clip_id, entry in manifest.items() if clip_id in current and entry["status"] == "ok"),
        key=lambda entry: entry["clip"],
    )
    split_clips = {
        split: interleave_speakers([entry for entry in usable if entry["split"] == split]) for split in SPLITS
    }
    index_path = shards / "index.json"
    previous = json.loads(index_path.read_text())["splits"] if index_path.exists() else {}
    index_path.unlink(missing_ok=True)
    for split in SPLITS:
        if split_clips[split] != previous.get(split) or (split_clips[split] and not (shards / split).exists()):
            _package_split(shards, split, split_clips[split])
    index = {
        "layout": layout,
        "raw": str(Path(raw).resolve()),
        "speakers": sorted({entry["speaker"] for entry in usable}),
        "splits": split_clips,
        "clip_frames": {entry["clip"]: entry["frames"] for entry in usable},
        "statistics": train_statistics([_record_path(shards, clip_id) for clip_id in split_clips["train"]]),
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "mel_bins": MEL_BINS,
        "mels_per_frame": MELS_PER_FRAME,
        "face_crop_size": face.FACE_CROP_SIZE,
        "mouth_crop_size": face.MOUTH_CROP_SIZE,
    }
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    skipped = [entry for clip_id, entry in manifest.items() if clip_id in current and entry["status"] == "skipped"]
    return {
        "found": len(clips),
        "processed": len(jobs),
        "ok": len(usable),
        "skipped": len(skipped),
        "splits": {split: len(ids) for split, ids in split_clips.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """``make data``: preprocess a corpus into shards; bad arguments end with one sentence."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="synthetic", choices=("synthetic", *LAYOUTS), help="corpus layout")
    parser.add_argument("--raw", help="corpus root (default for synthetic: the embedded corpus, built if missing)")
    parser.add_argument("--shards", help="output folder (default: data/shards/<corpus>)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel clip workers")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of speakers held out for validation")
    args = parser.parse_args(argv)
    shards = Path(args.shards or f"data/shards/{args.corpus}")
    layout = "lrs3" if args.corpus == "synthetic" else args.corpus
    raw = args.raw
    if raw is None and args.corpus == "synthetic":
        from datamodules.synthetic import ensure_default_corpus

        raw = ensure_default_corpus()
    if raw is None:
        parser.error(f"--raw is required for the {args.corpus} corpus")
    try:
        summary = preprocess(raw, layout, shards, args.workers, args.val_fraction)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    skipped = f"; {summary['skipped']} skipped (reasons in {shards / 'manifest.jsonl'})" if summary["skipped"] else ""
    print(
        f"{shards}: {summary['ok']} clips ready ({summary['processed']} processed now){skipped}; "
        + ", ".join(f"{split} {count}" for split, count in summary["splits"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
