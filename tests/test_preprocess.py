"""Preprocessing into shards (the datamodules/preprocess package): fidelity to the generator, bad clips, resuming."""

import dataclasses
import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from datamodules import preprocess as preprocessing
from datamodules.corpus import CorpusError, discover
from datamodules.face import mouth_opening
from datamodules.media import open_clip, read_audio, read_video, write_video
from datamodules.preprocess import packaging
from datamodules.preprocess.clip import DecodedOnce
from datamodules.synthetic.articulation import VISEME_CLASSES
from datamodules.threads import one_thread
from tests.test_datamodules import ClipIds


def records(shards: Path) -> dict[str, dict]:
    return {
        path.relative_to(shards / "clips").with_suffix("").as_posix(): pickle.loads(path.read_bytes())
        for path in (shards / "clips").rglob("*.pkl")
    }


def test_stored_mouth_opening_follows_the_generator_truth(synthetic_corpus, synthetic_shards):
    stored = records(synthetic_shards)
    assert stored, "the embedded corpus gives usable clips"
    for clip_id, record in stored.items():
        truth = json.loads((synthetic_corpus / f"{clip_id}.truth.json").read_text())["mouth_opening"]
        measured = mouth_opening(record["landmarks"])
        assert len(measured) == len(truth) == record["frames"]
        assert np.corrcoef(measured, truth)[0, 1] >= 0.8, clip_id
        assert set(record) == set(preprocessing.RECORD_KEYS)


def test_the_lips_touch_where_the_sidecar_says_and_a_clip_without_one_stores_none(
    synthetic_corpus, synthetic_shards, corpus_with_bad_clips, tmp_path
):
    """``lips_together`` is the generator's articulation: 1 on every p, b and m frame, 0 on every other speech
    sound, and ``visemes`` its viseme per frame; a clip without a sidecar (any real corpus) stores empty arrays,
    not a guess."""
    kinds = {"bilabial": [], "rest": [], "speech": []}
    for clip_id, record in records(synthetic_shards).items():
        visemes = json.loads((synthetic_corpus / f"{clip_id}.truth.json").read_text())["visemes"]
        assert record["lips_together"].shape == (record["frames"],)
        assert [VISEME_CLASSES[index] for index in record["visemes"]] == visemes
        for viseme, together in zip(visemes, record["lips_together"], strict=True):
            kinds[viseme if viseme in kinds else "speech"].append(together)
    shares = {kind: np.mean(flags) for kind, flags in kinds.items()}
    assert shares["bilabial"] == 1.0 and shares["speech"] < 0.01 and shares["rest"] > 0.8, shares
    without = tmp_path / "without-sidecars"
    preprocessing.preprocess(corpus_with_bad_clips, "lrs3", without, workers=0, progress=False)
    stored = records(without)
    assert stored and all(each["lips_together"].shape == each["visemes"].shape == (0,) for each in stored.values())


def test_manifest_and_index_describe_every_clip(synthetic_corpus, synthetic_shards):
    manifest = preprocessing.read_manifest(synthetic_shards)
    assert len(manifest) == len(list(synthetic_corpus.rglob("*.mp4")))
    assert all(entry["status"] == "ok" and entry["face_ratio"] >= 0.95 for entry in manifest.values())
    index = json.loads((synthetic_shards / "index.json").read_text())
    assert sum(map(len, index["splits"].values())) == len(manifest)
    for split, clip_ids in index["splits"].items():
        assert len(StreamingDataset(str(synthetic_shards / split))) == len(clip_ids)
    for clip_ids in index["splits"].values():
        speakers = [manifest[clip]["speaker"] for clip in clip_ids]
        leading = speakers[: len(set(speakers))]
        assert len(set(leading)) == len(leading), "evaluation batches start with one clip of every speaker"
    test_speakers = {manifest[clip]["speaker"] for clip in index["splits"]["test"]}
    train_speakers = {manifest[clip]["speaker"] for clip in index["splits"]["train"]}
    assert test_speakers and not test_speakers & train_speakers, "splits are by speaker"


@pytest.fixture
def corpus_with_bad_clips(synthetic_corpus, tmp_path):
    """Three good clips of the embedded corpus, a corrupt file, a clip without audio and a 0.6 s clip."""
    raw = tmp_path / "raw"
    good = sorted(synthetic_corpus.rglob("*.mp4"))[:3]
    for path in good:
        target = raw / path.relative_to(synthetic_corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    speaker_dir = raw / good[0].relative_to(synthetic_corpus).parent
    (speaker_dir / "90001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    frames = read_video(good[0])
    write_video(speaker_dir / "90002.mp4", frames)
    write_video(speaker_dir / "90003.mp4", frames[:15], read_audio(good[0])[: 15 * 640])
    return raw


def split_contents(shards: Path) -> dict[str, list]:
    contents = {}
    for split in ("train", "val", "test"):
        if (shards / split).exists():
            contents[split] = [
                (item["clip"], item["mel"].tobytes(), item["landmarks"].tobytes(), item["face_jpeg"].tobytes())
                for item in StreamingDataset(str(shards / split))
            ]
    return contents


def test_bad_clips_are_skipped_with_reasons_and_reruns_resume(corpus_with_bad_clips, tmp_path, monkeypatch):
    complete = tmp_path / "complete"
    summary = preprocessing.preprocess(corpus_with_bad_clips, "lrs3", complete, workers=0, progress=False)
    assert (summary["found"], summary["ok"], summary["skipped"]) == (6, 3, 3)
    reasons = {
        clip.rsplit("/", 1)[1]: entry["reason"]
        for clip, entry in preprocessing.read_manifest(complete).items()
        if entry["status"] == "skipped"
    }
    assert "not a readable media file" in reasons["90001"]
    assert "no audio track" in reasons["90002"]
    assert "shorter than 1 s" in reasons["90003"]

    chunks = {path: path.stat().st_mtime_ns for path in complete.rglob("*.bin")}
    rerun = preprocessing.preprocess(corpus_with_bad_clips, "lrs3", complete, workers=0, progress=False)
    assert rerun["processed"] == 0 and rerun["ok"] == 3
    assert {path: path.stat().st_mtime_ns for path in complete.rglob("*.bin")} == chunks, "nothing repackaged"

    interrupted = tmp_path / "interrupted"
    real_process_clip = preprocessing.process_clip
    calls = []

    def process_then_interrupt(clip):
        calls.append(clip)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_process_clip(clip)

    monkeypatch.setattr(packaging, "process_clip", process_then_interrupt)  # where the workers look it up
    with pytest.raises(KeyboardInterrupt):
        preprocessing.preprocess(corpus_with_bad_clips, "lrs3", interrupted, workers=0, progress=False)
    assert not (interrupted / "index.json").exists(), "an interrupted run does not look finished"
    monkeypatch.setattr(packaging, "process_clip", real_process_clip)
    resumed = preprocessing.preprocess(corpus_with_bad_clips, "lrs3", interrupted, workers=0, progress=False)
    assert resumed["processed"] == 4, "only the clips not done before the interruption"
    assert split_contents(interrupted) == split_contents(complete)


def test_a_changed_validation_fraction_resplits_without_reprocessing(synthetic_corpus, synthetic_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(synthetic_shards, shards)
    before = json.loads((shards / "index.json").read_text())["splits"]
    assert before["val"], "the session corpus has a validation speaker at the default fraction"
    summary = preprocessing.preprocess(synthetic_corpus, "lrs3", shards, workers=0, val_fraction=0.0, progress=False)
    assert summary["processed"] == 0, "no clip goes through Face Mesh again"
    after = json.loads((shards / "index.json").read_text())["splits"]
    assert not after["val"] and set(after["train"]) == set(before["train"]) | set(before["val"])
    assert after["test"] == before["test"]
    manifest = preprocessing.read_manifest(shards)
    assert all(manifest[clip]["split"] == "train" for clip in after["train"])
    items = list(StreamingDataset(str(shards / "train")))
    assert sorted(item["clip"] for item in items) == sorted(after["train"])
    assert {item["split"] for item in items} == {"train"}, "re-split records carry their new split"


def test_another_generated_corpus_under_the_same_clip_ids_is_processed_again(synthetic_corpus, synthetic_shards,
                                                                              tmp_path):  # fmt: skip
    """A generated corpus rebuilt by another generator version (or with other arguments) reuses its clip ids for
    other content: its shards are processed and packaged again, also when they predate the record of the corpus
    they were made from; the same corpus, moved, is not."""
    corpus, shards = tmp_path / "corpus", tmp_path / "shards"
    shutil.copytree(synthetic_corpus, corpus)
    shutil.copytree(synthetic_shards, shards)
    clips = len(preprocessing.read_manifest(shards))
    assert preprocessing.preprocess(corpus, "lrs3", shards, workers=0, progress=False)["processed"] == 0

    def packaged() -> dict[str, int]:
        return {split: (shards / split / "index.json").stat().st_mtime_ns for split in ("train", "val", "test")}

    before = packaged()
    marker = json.loads((corpus / "corpus.json").read_text())
    marker["arguments"]["version"] += 1
    (corpus / "corpus.json").write_text(json.dumps(marker))
    assert preprocessing.preprocess(corpus, "lrs3", shards, workers=0, progress=False)["processed"] == clips
    assert all(after > before[split] for split, after in packaged().items()), "every split is packaged again"
    assert preprocessing.preprocess(corpus, "lrs3", shards, workers=0, progress=False)["processed"] == 0

    (shards / "generated_corpus.json").unlink()  # shards made before the corpus was recorded
    assert preprocessing.preprocess(corpus, "lrs3", shards, workers=0, progress=False)["processed"] == clips


PEAK_MEMORY = """
import json, sys
from pathlib import Path
from datamodules.corpus import Clip
from datamodules.preprocess import process_clip
def megabytes(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) / 1024
process_clip(Clip(Path(sys.argv[2]), "small", "s", "train"))  # warm-up: Face Mesh graph, imports
with open("/proc/self/clear_refs", "w") as peak:
    peak.write("5")  # the peak resident size (VmHWM) starts again from now
before = megabytes("VmRSS")
record = process_clip(Clip(Path(sys.argv[1]), "large", "s", "train"))
growth = megabytes("VmHWM") - before
print(json.dumps({"growth_mb": growth, "frames": record["frames"], "landmarks": record["landmarks"][:50].tolist()}))
"""


def test_a_long_large_clip_is_processed_in_bounded_memory(synthetic_corpus, tmp_path):
    """A 10 s 1280x720 clip (690 MB as raw RGB) is processed with far less memory, at its source resolution."""
    small = sorted(synthetic_corpus.rglob("*.mp4"))[0]
    large = tmp_path / "large.mp4"
    upscale = ["-stream_loop", "4", "-i", str(small), "-vf", "scale=720:720,pad=1280:720:280:0", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", str(large)]  # fmt: skip
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *upscale], check=True)
    frames, _ = open_clip(large)
    first = np.stack(list(itertools.islice(frames, 2)))
    assert first.shape == (2, 720, 1280, 3), "frames keep the source size"
    run = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(large), str(small)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["frames"] >= 250, "the whole clip"
    assert measured["growth_mb"] < 250, f"peak memory grew by {measured['growth_mb']:.0f} MB for one clip"
    small_landmarks = preprocessing.process_clip(discover(synthetic_corpus, "lrs3")[0])["landmarks"]
    error = np.abs(np.array(measured["landmarks"])[..., :2] - small_landmarks[:50, :, :2]).mean()
    assert error < 3.0, f"the 256-crop landmarks of the upscaled clip match the source clip's ({error:.2f} px off)"


class KillsItsWorker(os.PathLike):
    """A clip path whose reading kills the worker process, as the OOM killer or a native crash would."""

    def __fspath__(self) -> str:
        os.kill(os.getpid(), signal.SIGKILL)
        return ""


def test_a_dead_worker_costs_only_its_clip(synthetic_corpus, tmp_path, monkeypatch):
    clips = discover(synthetic_corpus, "lrs3")[:3]
    doomed = dataclasses.replace(clips[1], path=KillsItsWorker())
    monkeypatch.setattr(packaging, "discover", lambda *args: [clips[0], doomed, clips[2]])
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the pool hangs on a dead worker"))
    signal.alarm(240)
    try:
        summary = preprocessing.preprocess(synthetic_corpus, "lrs3", tmp_path, workers=2, progress=False)
    finally:
        signal.alarm(0)
    assert (summary["ok"], summary["skipped"]) == (2, 1)
    entry = preprocessing.read_manifest(tmp_path)[doomed.clip_id]
    assert entry["status"] == "skipped" and "worker process died" in entry["reason"] and "SIGKILL" in entry["reason"]


def test_parallel_workers_give_the_same_shards(corpus_with_bad_clips, tmp_path):
    serial = tmp_path / "serial"
    parallel = tmp_path / "parallel"
    preprocessing.preprocess(corpus_with_bad_clips, "lrs3", serial, workers=0, progress=False)
    preprocessing.preprocess(corpus_with_bad_clips, "lrs3", parallel, workers=2, progress=False)
    assert split_contents(parallel) == split_contents(serial)


def test_cli_reports_a_missing_corpus_in_one_sentence(tmp_path, capsys):
    assert preprocessing.main(["--corpus", "lrs3", "--raw", str(tmp_path / "none"), "--shards", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: The corpus folder {tmp_path / 'none'} does not exist."


def test_cli_answers_every_data_error_in_one_sentence(tmp_path, monkeypatch, capsys):
    """`make corpus SPEAKERS=20` then `make data`: the generator's CorpusError is the one CorpusError, one line."""
    from datamodules.synthetic import GENERATOR, MARKER

    monkeypatch.chdir(tmp_path)
    default = tmp_path / "data" / "corpus" / "synthetic"
    default.mkdir(parents=True)
    arguments = {"layout": "lrs3", "speakers": 20, "clips": 1, "seconds": 1.0, "seed": 0, "size": 256}
    (default / MARKER).write_text(json.dumps({"generator": GENERATOR, "arguments": arguments}))
    assert preprocessing.main(["--shards", str(tmp_path / "shards")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "made with other arguments" in error[0]
    assert "make data RAW=data/corpus/synthetic" in error[0], "says how to preprocess the corpus that is there"

    raw = tmp_path / "raw"
    (raw / "trainval" / "spk").mkdir(parents=True)
    (raw / "trainval" / "spk" / "00001.mp4").write_bytes(b"")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert preprocessing.main(["--corpus", "lrs3", "--raw", str(raw), "--shards", str(a_file)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: preprocessing into {a_file} failed")


def test_speakers_are_interleaved_round_robin():
    entries = [{"clip": f"{speaker}/{n}", "speaker": speaker} for speaker in "ba" for n in range(3)]
    entries.append({"clip": "c/0", "speaker": "c"})
    assert preprocessing.interleave_speakers(entries) == ["a/0", "b/0", "c/0", "a/1", "b/1", "a/2", "b/2"]


def test_records_hold_the_face_box_and_source_size_to_paste_back(synthetic_corpus, synthetic_shards):
    from datamodules.face import CropBox, decode_jpeg

    for clip_id, record in list(records(synthetic_shards).items())[:2]:
        source = read_video(synthetic_corpus / f"{clip_id}.mp4")
        assert tuple(record["source_size"]) == source.shape[1:3] and record["source_size"].dtype == np.int64
        assert record["face_box"].shape == (3,) and record["face_box"].dtype == np.float32
        box = CropBox.from_array(record["face_box"])
        stored = decode_jpeg(record["face_jpeg"], record["face_offsets"], 0)
        assert np.abs(box.cut(source[0], 256).astype(int) - stored).mean() < 4, "the box is where the crop came from"


def reached_through_batch_mates(shards: Path, epochs: int) -> set[str]:
    """The train clips that the first one reaches through clips that shared a training batch (2 loader
    workers, ``epochs`` epochs)."""
    datamodule = ClipIds(str(shards), batch_size=4, num_workers=2)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batches = [set(batch) for _ in range(epochs) for batch in loader]
    reached = {datamodule.index["splits"]["train"][0]}
    while grown := [batch for batch in batches if batch & reached and not batch <= reached]:
        reached.update(*grown)
    return reached


@pytest.mark.parametrize("clips_per_chunk, connected", [(None, True), (16, False)])
def test_shuffling_deals_other_clips_to_each_loader_worker_every_epoch(
    synthetic_shards, tmp_path, monkeypatch, clips_per_chunk, connected
):
    """A small split is packaged one clip per LitData chunk, so over a few epochs every clip meets every other
    through its batch mates; packaged in one chunk (16 clips), each of 2 workers keeps its own half for ever."""
    if clips_per_chunk is not None:
        monkeypatch.setattr(packaging, "clips_per_chunk", lambda paths: clips_per_chunk)
    source = next((synthetic_shards / "clips").rglob("*.pkl"))
    clip_ids = [f"s{n % 4}/{n:05d}" for n in range(16)]
    for clip_id in clip_ids:
        record = {**pickle.loads(source.read_bytes()), "clip": clip_id, "speaker": clip_id.split("/")[0]}
        packaging._store_record(packaging._record_path(tmp_path, clip_id), record)
    packaging._package_split(tmp_path, "train", clip_ids)
    index = {"speakers": sorted({clip.split("/")[0] for clip in clip_ids}), "splits": {"train": clip_ids}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    chunks = json.loads((tmp_path / "train" / "index.json").read_text())["chunks"]
    assert len(chunks) == (16 if clips_per_chunk is None else 1)
    assert (reached_through_batch_mates(tmp_path, epochs=4) == set(clip_ids)) == connected


def test_chunks_hold_one_clip_in_a_small_split_and_at_most_64_mb_in_a_large_one():
    def records(count, megabytes):
        return [SimpleNamespace(stat=lambda: SimpleNamespace(st_size=megabytes * 1_000_000))] * count

    assert packaging.clips_per_chunk(records(48, 2)) == 1
    assert packaging.clips_per_chunk(records(640, 2)) == 10, "64 chunks"
    assert packaging.clips_per_chunk(records(100_000, 2)) == 32, "64 MB"
    assert packaging.clips_per_chunk(records(10, 100)) == 1


def tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_shards_overlapping_the_corpus_are_refused_and_nothing_is_deleted(synthetic_corpus, tmp_path, capsys):
    """`make data` with SHARDS = RAW deleted the corpus's own test videos: overlapping folders are refused in one
    sentence before any work, and the corpus is byte for byte as it was."""
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_corpus, raw)
    assert any(path.parts[0] == "test" for path in map(Path, tree(raw))), "the corpus has a test/ folder to lose"
    before = tree(raw)
    for shards in (raw, raw / "shards", tmp_path):
        assert preprocessing.main(["--corpus", "lrs3", "--raw", str(raw), "--shards", str(shards)]) == 1
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "overlap" in error[0], error
        assert tree(raw) == before, f"SHARDS={shards} changed the corpus"


def test_a_split_folder_packaging_did_not_write_is_never_replaced(synthetic_corpus, synthetic_shards, tmp_path):
    shards = tmp_path / "shards"
    (shards / "test").mkdir(parents=True)
    (shards / "test" / "mine.mp4").write_bytes(b"a user's video")
    with pytest.raises(CorpusError, match="packaging did not write"):
        preprocessing.preprocess(synthetic_corpus, "lrs3", shards, workers=0, progress=False)
    assert (shards / "test" / "mine.mp4").read_bytes() == b"a user's video"
    assert not (shards / "manifest.jsonl").exists(), "refused before any work"

    for split in ("train", "val", "test"):  # what packaging wrote carries its marker and is replaced on a rerun
        assert (synthetic_shards / split / packaging.PACKAGED_MARKER).is_file()
    legacy = tmp_path / "legacy"
    shutil.copytree(synthetic_shards, legacy)
    for marker in legacy.glob(f"*/{packaging.PACKAGED_MARKER}"):
        marker.unlink()  # shards packaged before the marker hold LitData's files alone: still replaced
    packaging._package_split(legacy, "test", json.loads((legacy / "index.json").read_text())["splits"]["test"])
    assert (legacy / "test" / packaging.PACKAGED_MARKER).is_file()


class CountingDecoder:
    """Frames that count how often they are decoded (one pass over them is one decoding)."""

    def __init__(self, frames: int):
        self.frames, self.passes = [np.full((4, 4, 3), n, np.uint8) for n in range(frames)], 0

    def __iter__(self):
        self.passes += 1
        yield from self.frames


@pytest.mark.parametrize(("budget", "decodings"), [(10 * 48, 1), (9 * 48, 2)])
def test_a_clip_that_fits_the_budget_is_decoded_once_for_its_two_passes(budget, decodings):
    decoder = CountingDecoder(10)  # 10 frames of 48 bytes
    decoded = DecodedOnce(decoder, budget)
    first, second = [frame.copy() for frame in decoded], list(decoded)
    assert decoder.passes == decodings
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True)) and len(second) == 10


def test_the_crop_pass_runs_on_one_thread_and_gives_the_thread_pools_back_even_on_an_error():
    before = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(3)
    torch.set_num_threads(3)
    try:
        with pytest.raises(RuntimeError, match="mid-pass"), one_thread():
            inside = cv2.getNumThreads(), torch.get_num_threads()
            raise RuntimeError("a clip failed mid-pass")
        assert inside == (1, 1)
        assert (cv2.getNumThreads(), torch.get_num_threads()) == (3, 3)
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])
