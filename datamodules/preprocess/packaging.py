"""The clips of a corpus -> stored records and a manifest (in parallel, resumable) -> one LitData dataset per
split and ``index.json``."""

import json
import math
import multiprocessing
import os
import pickle
import shutil
from contextlib import closing
from pathlib import Path

import litdata
from tqdm import tqdm

from datamodules import face
from datamodules.audio import MEL_BINS, MELS_PER_FRAME
from datamodules.corpus import SPLITS, Clip, CorpusError, discover
from datamodules.media import FPS, SAMPLE_RATE
from datamodules.pool import imap_surviving
from datamodules.preprocess.clip import ClipSkipped, process_clip
from datamodules.statistics import read_record_storing_sums, train_statistics

MAX_CHUNK_BYTES = 64_000_000  # LitData's usual chunk size for streaming from object storage
MIN_CHUNKS = 64  # per split, so that shuffling deals other clips to each loader worker and rank every epoch
PACKAGED_MARKER = ".packaged-split"  # written into each split folder packaging makes; only such folders are replaced
LITDATA_FILE_PATTERNS = ("index.json", "chunk-*.bin")  # what a split packaged before the marker holds


def _record_path(shards: Path, clip_id: str) -> Path:
    """Where the processed record of ``clip_id`` is stored under ``shards``."""
    return shards / "clips" / f"{clip_id}.pkl"


def _store_record(path: Path, record: dict) -> None:
    """Writes a clip record atomically: a crash leaves the old record or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as stream:
        pickle.dump(record, stream, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)


def _skipped(clip: Clip, reason: str) -> dict:
    """The manifest line of a clip that cannot be used."""
    entry = {"clip": clip.clip_id, "speaker": clip.speaker, "split": clip.split, "status": "skipped"}
    return {**entry, "reason": reason, "frames": 0, "face_ratio": 0.0}


def _process_and_store(job: tuple[Clip, Path]) -> dict:
    """Worker: processes one clip, writes its record atomically, returns its manifest line."""
    clip, shards = job
    entry = {"clip": clip.clip_id, "speaker": clip.speaker, "split": clip.split}
    try:
        record = process_clip(clip)
    except ClipSkipped as skipped:
        return _skipped(clip, str(skipped))
    except Exception as error:  # a clip must never stop the corpus: record it and go on
        return _skipped(clip, f"unexpected {type(error).__name__}: {error}")
    _store_record(_record_path(shards, clip.clip_id), record)
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


def _load_record(item: tuple[str, str]) -> dict:
    """Packaging's reader: the stored record at ``path`` in ``split`` (a re-split clip keeps its record and takes
    its new split), its statistics sums stored on the way."""
    path, split = item
    return {**read_record_storing_sums(path), "split": split}


def clips_per_chunk(record_paths: list[Path]) -> int:
    """Clips per LitData chunk of a split: at least MIN_CHUNKS chunks (one clip each in a small split), none
    larger than MAX_CHUNK_BYTES. LitData shuffles which chunks each worker and rank gets, but a chunk's clips
    stay on one worker: the embedded corpus's training split in one chunk gave one worker the same 8 clips,
    its only batch, every epoch, and the contrastive SFE learned sync about half as well."""
    if not record_paths:
        return 1
    mean_bytes = sum(path.stat().st_size for path in record_paths) / len(record_paths)
    return max(1, min(math.ceil(len(record_paths) / MIN_CHUNKS), int(MAX_CHUNK_BYTES // mean_bytes)))


def _packaged_clips_per_chunk(shards: Path, split: str) -> int | None:
    """Clips per chunk of a packaged split (None if not packaged, or packaged by bytes by an older version)."""
    index = shards / split / "index.json"
    return json.loads(index.read_text())["config"].get("chunk_size") if index.exists() else None


def _written_by_packaging(folder: Path) -> bool:
    """Whether ``folder`` is a split that packaging wrote: it holds the marker, or (packaged before the marker was
    written) LitData's index and chunks and nothing else."""
    if (folder / PACKAGED_MARKER).is_file():
        return True
    entries = list(folder.iterdir())
    return all(entry.is_file() and any(entry.match(pattern) for pattern in LITDATA_FILE_PATTERNS) for entry in entries)


def _refuse_foreign_folder(target: Path) -> None:
    """A split folder that packaging did not write is never replaced: one CorpusError sentence instead."""
    if target.exists() and not (target.is_dir() and _written_by_packaging(target)):
        raise CorpusError(
            f"{target} holds files that packaging did not write; choose another SHARDS folder or move them away."
        )


def _remove_packaged_split(target: Path) -> None:
    """Removes the split folder ``target`` that packaging wrote; any other folder there is refused, never deleted."""
    _refuse_foreign_folder(target)
    shutil.rmtree(target, ignore_errors=True)


def _package_split(shards: Path, split: str, clip_ids: list[str]) -> None:
    """Writes the LitData dataset of one split from the stored records, replacing the old one at the end."""
    target = shards / split
    staging = shards / f".{split}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _remove_packaged_split(target)
    if not clip_ids:
        return
    paths = [_record_path(shards, clip_id) for clip_id in clip_ids]
    litdata.optimize(
        fn=_load_record,
        inputs=[(str(path), split) for path in paths],
        output_dir=str(staging),
        num_workers=1,
        chunk_size=clips_per_chunk(paths),
        reorder_files=False,
        keep_data_ordered=True,
        verbose=False,
        # Packaging only unpickles records: forking is safe here and saves seconds of interpreter start-up.
        start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
    )
    (staging / PACKAGED_MARKER).write_text(f"{split}\n")
    os.replace(staging, target)


def _forget_another_generated_corpus(raw: str | Path, shards: Path, manifest: dict) -> dict:
    """The manifest to resume from. A generated corpus (``corpus.json``) rebuilt with other arguments or by another
    generator version reuses its clip ids for other content, so its records are stale: when the corpus that
    ``shards`` was made from (``generated_corpus.json``, absent in shards made before it was written) is not
    ``raw``'s, every clip is processed again."""
    from datamodules.synthetic import read_marker  # the generator's imports (scipy.signal, audio) cost a second

    marker = read_marker(raw)
    recorded = shards / "generated_corpus.json"
    if marker is None:
        recorded.unlink(missing_ok=True)
        return manifest
    made_from = json.loads(recorded.read_text()) if recorded.exists() else None
    if manifest and made_from != marker["arguments"]:
        (shards / "manifest.jsonl").unlink(missing_ok=True)
        manifest = {}
    recorded.write_text(json.dumps(marker["arguments"]) + "\n")
    return manifest


def _check_output(raw: str | Path, shards: Path) -> None:
    """Refuses, before any work, shards that would replace files packaging did not write: shards inside the corpus
    or the corpus inside the shards, or a split folder there that packaging did not make."""
    corpus, output = Path(raw).resolve(), shards.resolve()
    if corpus == output or corpus in output.parents or output in corpus.parents:
        raise CorpusError(
            f"The shards folder {shards} and the corpus folder {raw} overlap; packaging would replace the corpus's "
            "own files, so choose a SHARDS folder outside RAW (and RAW outside SHARDS)."
        )
    for split in SPLITS:
        _refuse_foreign_folder(shards / split)


def preprocess(
    raw: str | Path, layout: str, shards: str | Path, workers: int = 2, val_fraction: float = 0.1, progress=True
) -> dict:
    """Processes the clips of ``raw`` not yet in ``shards``' manifest and (re)packages the changed splits.

    Returns a summary: clips found, processed now, ok and skipped in all, and the clip count per split.
    ``workers=0`` processes in this process (for debugging).
    """
    shards = Path(shards)
    _check_output(raw, shards)
    clips = discover(raw, layout, val_fraction)
    shards.mkdir(parents=True, exist_ok=True)
    manifest = _forget_another_generated_corpus(raw, shards, read_manifest(shards))
    pending = [
        clip
        for clip in clips
        if clip.clip_id not in manifest
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

        for clip in clips:  # a changed split (another val_fraction, added speakers) reuses the stored record
            if clip.clip_id in manifest and manifest[clip.clip_id]["split"] != clip.split:
                manifest[clip.clip_id] = {**manifest[clip.clip_id], "split": clip.split}
                manifest_file.write(json.dumps(manifest[clip.clip_id]) + "\n")
        if workers == 0:
            for job in jobs:
                record(_process_and_store(job))
        elif jobs:
            log = str(shards / "workers.log")
            with closing(imap_surviving(_process_and_store, jobs, workers, _send_native_logs_to, (log,))) as done:
                for (clip, _), entry, death in done:
                    record(entry or _skipped(clip, death))
    bar.close()

    current = {clip.clip_id for clip in clips}
    processed = {clip.clip_id for clip in pending}  # their records are new: their splits are packaged again
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
        chunking = clips_per_chunk([_record_path(shards, clip_id) for clip_id in split_clips[split]])
        changed = split_clips[split] != previous.get(split) or bool(processed & set(split_clips[split]))
        if changed or (split_clips[split] and _packaged_clips_per_chunk(shards, split) != chunking):
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
