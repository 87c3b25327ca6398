"""Bad input at `make generate` and `make data` (docs/bad-input.md): each case a careless user hits, on small files
made here, ends in one sentence and a non-zero exit with nothing left behind or changed, or in the stated clean
behaviour; then a fuzz-style sweep of malformed inputs through both entry points."""

import json
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from skimage import data

from datamodules import preprocess as preprocessing
from datamodules.corpus import Clip
from datamodules.media import SAMPLE_RATE, MediaError, decode_speech
from datamodules.photo import PhotoError, load_photo, reference_from_photo
from datamodules.preprocess import clip as clip_processing
from datamodules.shards import ShardsError, read_index
from datamodules.state_files import write_atomically
from experiments import generate as generation
from experiments.generation.compositing import identity_grid
from lightning_modules.checkpoints import CheckpointError


def speech_like(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced 140 Hz tone in syllables of about 200 ms: speech enough for every check."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    return (0.2 * voice * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2).astype(np.float32)


def snapshot(root: Path, leave_out: Path | None = None) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root`` (but under ``leave_out``): size, modification time and a hash of its bytes."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (leave_out and leave_out in (path, *path.parents)):
            stat = path.stat()
            files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, zlib.crc32(path.read_bytes()))
    return files


def one_error_line(text: str) -> str:
    """The error of ``text``: one ``error:`` sentence, its last line, without a traceback (notes may come first)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text and [line for line in lines if line.startswith("error")] == lines[-1:], text
    assert lines[-1].startswith("error: ") and lines[-1].endswith((".", "?")), lines[-1]
    return lines[-1]


def png_header(width: int, height: int) -> bytes:
    """A PNG file that claims ``width`` x ``height`` pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory) -> Path:
    """A small photo of a face (the astronaut's head) that every face check passes."""
    path = tmp_path_factory.mktemp("photo") / "face.png"
    Image.fromarray(data.astronaut()[:300, 100:400]).save(path)
    return path


@pytest.fixture
def inputs(tmp_path, face_photo) -> dict[str, Path]:
    """A good photo, a good recording and two checkpoint files that are read only after every input check."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(face_photo, folder / "face.png")
    soundfile.write(folder / "speech.wav", speech_like(1.2), SAMPLE_RATE)
    (folder / "mdn.ckpt").write_bytes(b"read only after the inputs are checked")
    (folder / "renderer.ckpt").write_bytes(b"read only after the inputs are checked")
    return {"image": folder / "face.png", "audio": folder / "speech.wav", "mdn": folder / "mdn.ckpt",
            "renderer": folder / "renderer.ckpt"}  # fmt: skip


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The temporary folder that generation's scratch audio goes to, empty again after every run."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def run_generate(capsys, arguments: dict, *flags: str) -> tuple[int, str]:
    """``make generate``'s entry point with ``arguments`` (``--key=value``): its exit status and stderr."""
    argv = [f"--{key}={value}" for key, value in arguments.items()] + ["--no-progress", *flags]
    try:
        code = generation.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


# The output location: checked before any work, nothing left behind


def no_work(*args, **kwargs):
    raise AssertionError("work began before the output location was checked")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("old.mp4", r"^error: The output .*old\.mp4 is a folder; give a file name, such as .*old\.mp4/video\.mp4\.$"),
        ("a_file/video.mp4", r"^error: The output .*a_file/video\.mp4 cannot be written: .*a_file is a file, not a "),
        ("a_file/deeper/video.mp4", r"cannot be written: .*a_file is a file, not a folder\.$"),
        ("inputs/speech.mp4", r"^error: The output .*speech\.mp4 is the input .*speech\.mp4; write the video to anot"),
        ("/sys/macl-video.mp4", r"^error: The output /sys/macl-video\.mp4 cannot be written: /sys takes no new file"),
        ("/sys/macl/video.mp4", r"^error: The output /sys/macl/video\.mp4 cannot be written: /sys/macl takes no new"),
    ],
)
def test_the_output_location_is_checked_before_any_work(tmp_path, capsys, inputs, scratch, monkeypatch, out, message):
    if out.startswith("/sys") and not (Path("/sys").is_dir() and sys.platform == "linux"):
        pytest.skip("needs Linux's read-only /sys")
    (tmp_path / "old.mp4").mkdir()
    (tmp_path / "a_file").write_text("a file where a folder is asked for")
    if out == "inputs/speech.mp4":
        shutil.copy(inputs["audio"], tmp_path / "inputs" / "speech.mp4")
        inputs = {**inputs, "audio": tmp_path / "inputs" / "speech.mp4"}
    monkeypatch.setattr(generation, "decode_speech", no_work)
    monkeypatch.setattr(generation, "load_reference", no_work)
    before = snapshot(tmp_path)
    code, error = run_generate(capsys, {**inputs, "out": out if out.startswith("/") else tmp_path / out})
    assert code == 1
    assert re.search(message, one_error_line(error)), error
    assert snapshot(tmp_path) == before and not Path("/sys/macl").exists()


def test_a_failure_after_the_check_removes_the_folders_it_made(tmp_path, capsys, inputs, scratch):
    soundfile.write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    out = tmp_path / "made" / "deeper" / "video.mp4"
    before = snapshot(tmp_path)
    code, error = run_generate(capsys, {**inputs, "audio": tmp_path / "silent.wav", "out": out})
    assert code == 1 and "silent.wav is silent" in one_error_line(error)
    assert not (tmp_path / "made").exists() and snapshot(tmp_path) == before and not list(scratch.iterdir())


class StillModels:
    """Stand-ins for the trained stages, as fast as can be: the reference's own landmarks, its crop as the face."""

    class Landmarks(torch.nn.Module):
        def generate(self, windows, registered, mode, samples, seed):
            frames = windows.shape[1]
            return {"registered": registered[None, None].expand(1, frames, 68, 3), "pose": torch.zeros(1, frames, 6)}

    class Faces(torch.nn.Module):
        def render(self, crop, crop_landmarks, targets):
            return crop

        def motion(self, crop, crop_landmarks, targets):
            """No motion and no paint: the photo as it is."""
            size = crop.shape[-1]
            return {"grid": identity_grid(size).expand(len(crop), -1, -1, -1), "paint": torch.zeros_like(crop)}

    @classmethod
    def load(cls, mdn, renderer) -> generation.Models:
        return generation.Models(cls.Landmarks(), cls.Faces())


@pytest.mark.parametrize(("interruption", "status", "how"), [("SIGTERM", 143, "SIGTERM"), ("Ctrl-C", 130, "Ctrl-C")])
def test_an_interrupted_generation_leaves_nothing_and_ends_in_one_sentence(
    tmp_path, capsys, inputs, scratch, monkeypatch, interruption, status, how
):
    monkeypatch.setattr(generation.Models, "load", StillModels.load)
    writer_class = generation.VideoStreamWriter
    seen = {}

    class InterruptedWriter(writer_class):
        def write(self, frame):
            super().write(frame)
            seen["partial"] = self.partial.exists()
            if self.frames == 3:  # the way a user stops it: kill <pid> (SIGTERM) or Ctrl-C (SIGINT)
                os.kill(os.getpid(), signal.SIGTERM if interruption == "SIGTERM" else signal.SIGINT)

    monkeypatch.setattr(generation, "VideoStreamWriter", InterruptedWriter)
    handler = signal.getsignal(signal.SIGTERM)
    before = snapshot(tmp_path)
    # Ctrl-C raises KeyboardInterrupt also where the suite runs in the background, with SIGINT ignored
    previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, error = run_generate(capsys, {**inputs, "out": tmp_path / "made" / "video.mp4"})
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    assert seen["partial"], "the video was being written when it was stopped"
    assert code == status
    assert one_error_line(error) == (
        f"error: generation stopped by {how}; no video was written and the partial files are removed."
    )
    assert snapshot(tmp_path) == before and not (tmp_path / "made").exists() and not list(scratch.iterdir())
    assert signal.getsignal(signal.SIGTERM) is handler, "the SIGTERM handler is put back"


def test_a_made_folder_and_a_replaced_video_are_said(tmp_path, capsys, inputs, scratch, monkeypatch):
    monkeypatch.setattr(generation.Models, "load", StillModels.load)
    out = tmp_path / "made" / "video.mp4"
    code, output = run_generate(capsys, {**inputs, "out": out})
    assert code == 0 and f"Made the folder {tmp_path / 'made'} for the output." in output.splitlines()
    code, output = run_generate(capsys, {**inputs, "out": out})
    assert code == 0 and f"Replaced the earlier {out}." in output.splitlines()
    assert sorted(path.name for path in out.parent.iterdir()) == ["video.mp4"] and not list(scratch.iterdir())


# Speech


@pytest.mark.parametrize(
    ("rate", "damage", "message"),
    [
        (SAMPLE_RATE, np.nan, r"holds 3 non-finite audio samples \(NaN or infinite, the first at 0\.50 s\): the rec"),
        (SAMPLE_RATE, np.inf, r"holds 3 non-finite audio samples \(NaN or infinite, the first at 0\.50 s\)"),
        (44_100, -np.inf, r"non-finite audio samples \(NaN or infinite, the first at 0\.50 s\)"),
        (SAMPLE_RATE, 3e38, r"peaks at 3\.0e\+38 times full scale, which is no sound"),
    ],
)
def test_non_finite_speech_is_named_as_such(tmp_path, rate, damage, message):
    audio = speech_like(2.0, rate)
    audio[rate // 2 : rate // 2 + 3] = damage
    soundfile.write(tmp_path / "damaged.wav", audio, rate, subtype="FLOAT")
    with pytest.raises(MediaError, match=message):
        decode_speech(tmp_path / "damaged.wav", tmp_path / "decoded.wav")


def test_a_clip_with_non_finite_audio_is_skipped_with_that_reason(monkeypatch):
    audio = speech_like(2.0)
    audio[100] = np.nan
    monkeypatch.setattr(clip_processing, "open_clip", lambda path: (np.zeros((50, 8, 8, 3), np.uint8), audio))
    with pytest.raises(clip_processing.ClipSkipped, match=r"clip\.mp4 holds 1 non-finite audio samples") as skipped:
        clip_processing.process_clip(Clip(Path("clip.mp4"), "s/clip", "s", "train"))
    assert clip_processing.skip_kind(str(skipped.value)) == "with NaN or infinite audio samples"


# Photos


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (14000, 14000, r"is 196 megapixels; photos of at most 64 megapixels \(8000x8000\) are read: scale it down"),
        (8001, 8000, r"is 8001x8000 pixels \(64 megapixels\); photos of at most 64 megapixels \(8000x8000\) are read"),
        (8000, 8000, r"cannot be decoded"),  # at the limit: read (this one holds no pixels, so it fails later)
    ],
)
def test_a_photo_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, width, height, message):
    (tmp_path / "huge.png").write_bytes(png_header(width, height))
    with pytest.raises(PhotoError, match=message):
        load_photo(tmp_path / "huge.png")


def test_the_first_frame_of_an_animation_is_used_and_said(tmp_path, face_photo):
    frames = [Image.open(face_photo).convert("RGB"), Image.fromarray(np.zeros((300, 300, 3), np.uint8))]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=100)
    notes = []
    photo = load_photo(tmp_path / "moving.gif", notes)
    assert photo.mean() > 50, "the first frame, not the black second one"
    assert notes == [f"The image {tmp_path / 'moving.gif'} holds 2 frames (an animation or pages); using the first."]
    still = []
    load_photo(face_photo, still)
    assert still == []


def drawn_face(size: int = 512) -> np.ndarray:
    """A cartoon face drawn with flat colours: eyes, brows, nose and lips in an oval."""
    image = np.full((size, size, 3), 255, np.uint8)
    c = size // 2
    cv2.ellipse(image, (c, c), (int(size * 0.28), int(size * 0.38)), 0, 0, 360, (235, 200, 170), -1)
    for side in (-1, 1):
        eye = (c + side * int(size * 0.11), c - int(size * 0.08))
        cv2.ellipse(image, eye, (int(size * 0.06), int(size * 0.03)), 0, 0, 360, (255, 255, 255), -1)
        cv2.ellipse(image, eye, (int(size * 0.06), int(size * 0.03)), 0, 0, 360, (0, 0, 0), 2)
        cv2.circle(image, eye, int(size * 0.022), (70, 40, 20), -1)
        brow = (eye[0], eye[1] - int(size * 0.06))
        cv2.ellipse(image, brow, (int(size * 0.07), int(size * 0.02)), 0, 180, 360, (60, 40, 20), 5)
    cv2.line(image, (c, c - int(size * 0.04)), (c - int(size * 0.02), c + int(size * 0.07)), (150, 100, 80), 3)
    cv2.ellipse(image, (c, c + int(size * 0.17)), (int(size * 0.1), int(size * 0.03)), 0, 0, 360, (200, 80, 80), -1)
    return image


def test_a_drawn_face_is_animated_with_a_warning():
    reference = reference_from_photo(drawn_face(), "drawing.png")
    assert any(note.startswith("The face detector found the face in drawing.png with confidence 0.") for note in
               reference.notes)  # fmt: skip
    drawn = [warning for warning in reference.warnings if "looks drawn" in warning]
    assert len(drawn) == 1 and int(drawn[0].split("(")[1].split("%")[0]) > 70, reference.warnings


def test_an_unsure_detector_is_warned_and_a_photo_is_not():
    tiny = (data.lfw_subset()[0] * 255).astype(np.uint8)  # a 25 px face of a real person, upsampled
    blurred = np.repeat(cv2.resize(tiny, (200, 200), interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
    unsure = reference_from_photo(blurred, "tiny.png")
    assert [warning for warning in unsure.warnings if "unsure" in warning] == [
        next(warning for warning in unsure.warnings if warning.startswith("The face detector is unsure of the face"))
    ]
    photo = reference_from_photo(data.astronaut(), "astronaut.png")
    assert not [warning for warning in photo.warnings if "unsure" in warning or "drawn" in warning], photo.warnings


# Arguments that were taken silently


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--feather=-1"], r"^error: The feather must be between 0 \(a hard edge\) and 0\.5 \(a blend reaching the"),
        (["--feather=nan"], r"^error: The feather must be between 0"),
        (["--seed=-1"], r"^error: The seed must be between 0 and 4294967295, got -1\.$"),
        (["--seed=4294967295", "--mode=sample", "--samples=2"], r"^error: The seed must be between 0 and 4294967294"),
        (["--samples=1000000000", "--mode=sample"], r"^error: --samples 1000000000 is more videos than one call wri"),
    ],
)
def test_out_of_range_arguments_are_refused(tmp_path, capsys, inputs, scratch, flags, message):
    code, error = run_generate(capsys, {**inputs, "out": tmp_path / "video.mp4"}, *flags)
    assert code == 1 and re.search(message, one_error_line(error)), error


# State files


def test_state_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "index.json", '{"old": 1}\n')
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, '{"new": 2}\n')
    assert path.read_text() == '{"old": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["index.json"]


@pytest.mark.parametrize("content", ['{"best_checkpoint": "runs/mdn/x/checkpoints/be', "[1, 2]", "\x00\x01"])
def test_a_corrupt_metrics_json_in_a_run_folder_is_one_sentence(tmp_path, capsys, inputs, scratch, content):
    run = tmp_path / "runs" / "mdn" / "cut"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "metrics.json").write_text(content)
    with pytest.raises(
        CheckpointError, match=r"metrics\.json (is not valid JSON|holds a \w+, not a record of the run)"
    ):
        generation.resolve_checkpoint(run, "mdn")
    code, error = run_generate(capsys, {**inputs, "mdn": run, "out": tmp_path / "video.mp4"})
    assert code == 1 and f"delete it to use {run / 'checkpoints' / 'last.ckpt'}" in one_error_line(error)


@pytest.fixture
def copied_shards(synthetic_shards, tmp_path) -> Path:
    shards = tmp_path / "shards"
    shutil.copytree(synthetic_shards, shards)
    return shards


def test_a_manifest_cut_by_an_interruption_resumes_with_that_clip(synthetic_corpus, copied_shards):
    manifest = copied_shards / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    cut_clip = json.loads(lines[-1])["clip"]
    manifest.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    assert cut_clip not in preprocessing.read_manifest(copied_shards)
    (copied_shards / "clips" / f"{cut_clip}.pkl").unlink()  # its record was not written either
    summary = preprocessing.preprocess(synthetic_corpus, "lrs3", copied_shards, workers=0, progress=False)
    assert summary["processed"] == 1 and summary["ok"] == len(lines)
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]  # every line whole again
    assert sorted(entry["clip"] for entry in entries) == sorted(preprocessing.read_manifest(copied_shards))


def test_a_corrupt_manifest_line_and_a_corrupt_index_are_one_sentence(synthetic_corpus, copied_shards, capsys):
    manifest = copied_shards / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join([lines[0], "{garbage\n", *lines[1:]]))
    arguments = ["--corpus", "lrs3", "--raw", str(synthetic_corpus), "--shards", str(copied_shards), "--workers", "0"]
    before = snapshot(copied_shards.parent)
    assert preprocessing.main(arguments) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"error: Line 2 of {manifest} is not a manifest entry; delete that line (its clip is processed again) or the "
        "whole manifest (every clip is), then run make data again."
    )
    assert snapshot(copied_shards.parent) == before
    manifest.write_text("".join(lines))

    index = copied_shards / "index.json"
    splits = json.loads(index.read_text())["splits"]
    for corrupt in (index.read_text()[:100], "[]", '{"splits": 3}'):
        index.write_text(corrupt)
        with pytest.raises(ShardsError, match=r"index\.json is corrupt \(not the JSON object `make data` writes\); "):
            read_index(copied_shards)
    assert preprocessing.main(arguments) == 0, "make data writes the index anew"
    assert "(0 processed now)" in capsys.readouterr().out and read_index(copied_shards)["splits"] == splits


def test_make_data_with_no_clip_ready_exits_1_with_the_reasons_counted(tmp_path, capsys):
    raw = tmp_path / "raw"
    for name, content in (("a/1.mp4", b""), ("a/2.mp4", b"not a video"), ("b/1.mp4", bytes(2000))):
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_bytes(content)
    shards = tmp_path / "shards"
    argv = ["--corpus", "folder", "--raw", str(raw), "--shards", str(shards), "--workers", "0"]
    assert preprocessing.main(argv) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"error: none of the 3 clips is ready (3 corrupt or truncated), so {shards} holds no index.json; each clip's "
        f"reason is in {shards / 'manifest.jsonl'}."
    )
    assert not (shards / "index.json").exists() and len(preprocessing.read_manifest(shards)) == 3


# Fuzz: malformed inputs through both entry points


def _bad_wav_header(path: Path) -> None:
    soundfile.write(path, speech_like(2.0), SAMPLE_RATE)
    raw = bytearray(path.read_bytes())
    raw[40:44] = struct.pack("<I", 0x7FFFFFF0)  # a data chunk that claims 2 GB
    path.write_bytes(bytes(raw[: len(raw) // 3]))


GENERATE_FUZZ = {  # name -> (argument, how to make it from the good inputs): the other arguments are good
    "image zero-length": ("image", lambda p, good: p.write_bytes(b"")),
    "image truncated png": ("image", lambda p, good: p.write_bytes(good["image"].read_bytes()[:900])),
    "image truncated jpeg": ("image", lambda p, good: p.write_bytes(_jpeg_bytes()[:2000])),
    "image text": ("image", lambda p, good: p.write_text("a photo of me")),
    "image wav": ("image", lambda p, good: soundfile.write(p, speech_like(1.0), SAMPLE_RATE, format="WAV")),
    "image folder": ("image", lambda p, good: p.mkdir()),
    "image missing": ("image", lambda p, good: None),
    "image huge header": ("image", lambda p, good: p.write_bytes(png_header(100_000, 100_000))),
    "image one pixel": ("image", lambda p, good: Image.new("RGB", (1, 1)).save(p, format="PNG")),
    "image all black": ("image", lambda p, good: Image.new("RGB", (400, 300)).save(p, format="PNG")),
    "audio zero-length": ("audio", lambda p, good: p.write_bytes(b"")),
    "audio truncated wav": ("audio", lambda p, good: p.write_bytes(good["audio"].read_bytes()[:60])),
    "audio huge header": ("audio", lambda p, good: _bad_wav_header(p)),
    "audio text": ("audio", lambda p, good: p.write_text("hello")),
    "audio png": ("audio", lambda p, good: p.write_bytes(good["image"].read_bytes())),
    "audio folder": ("audio", lambda p, good: p.mkdir()),
    "audio nan": ("audio", lambda p, good: soundfile.write(p, np.full(SAMPLE_RATE, np.nan, np.float32), SAMPLE_RATE)),
    "audio inf": ("audio", lambda p, good: soundfile.write(p, np.full(SAMPLE_RATE, np.inf, np.float32), SAMPLE_RATE)),
    "audio 0.1 s": ("audio", lambda p, good: soundfile.write(p, speech_like(0.1), SAMPLE_RATE)),
    "audio silent": ("audio", lambda p, good: soundfile.write(p, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)),
    "mdn zero-length": ("mdn", lambda p, good: p.write_bytes(b"")),
    "mdn text": ("mdn", lambda p, good: p.write_text("weights")),
    "mdn empty folder": ("mdn", lambda p, good: p.mkdir()),
    "renderer random bytes": ("renderer", lambda p, good: p.write_bytes(np.random.default_rng(0).bytes(4096))),
    "out txt": ("out", lambda p, good: None),
    "out folder": ("out", lambda p, good: p.mkdir()),
}
GENERATE_FLAGS = {
    "chunk 0": ["--chunk=0"],
    "chunk text": ["--chunk=ten"],
    "lip gain inf": ["--lip-gain=inf"],
    "lip gain nan": ["--lip-gain=nan"],
    "samples 0": ["--samples=0"],
    "mode unknown": ["--mode=loud"],
    "seed float": ["--seed=1.5"],
    "feather huge": ["--feather=1e308"],
}


def _jpeg_bytes() -> bytes:
    return cv2.imencode(".jpg", data.astronaut()[:300, 100:400, ::-1])[1].tobytes()


@pytest.mark.parametrize("case", [*GENERATE_FUZZ, *GENERATE_FLAGS])
def test_fuzz_generate(tmp_path, capsys, inputs, scratch, case):
    arguments = {**inputs, "out": tmp_path / "out" / "video.mp4"}
    flags = GENERATE_FLAGS.get(case, [])
    if case in GENERATE_FUZZ:
        key, make = GENERATE_FUZZ[case]
        suffix = {"image": ".png", "audio": ".wav", "out": ".txt"}.get(key, ".ckpt")
        target = tmp_path / "fuzz" / f"{key}{suffix}"
        target.parent.mkdir(exist_ok=True)
        make(target, inputs)
        arguments[key] = target
    before = snapshot(tmp_path)
    code, error = run_generate(capsys, arguments, *flags)
    assert code in (1, 2), error
    one_error_line(error)
    assert snapshot(tmp_path) == before and not list(scratch.iterdir())


def _fuzz_corpus(raw: Path, synthetic_corpus: Path, case: str) -> None:
    """A folder corpus of one bad clip for a fuzz case (a zero-length one where the case is another argument)."""
    good = sorted(synthetic_corpus.rglob("*.mp4"))[0]
    (raw / "spk").mkdir(parents=True)
    if case == "clips truncated":
        (raw / "spk" / "1.mp4").write_bytes(good.read_bytes()[:5000])
    elif case == "clips text":
        (raw / "spk" / "1.mp4").write_text("a video")
    elif case == "clips png":
        Image.new("RGB", (64, 64)).save(raw / "spk" / "1.mp4", format="PNG")
    elif case == "clips folder":
        (raw / "spk" / "1.mp4").mkdir()
    else:
        (raw / "spk" / "1.mp4").write_bytes(b"")


DATA_FUZZ = {  # name -> extra arguments (RAW and SHARDS are made per case)
    "clips zero-length": [],
    "clips truncated": [],
    "clips text": [],
    "clips png": [],
    "clips folder": [],
    "raw empty": [],
    "raw a file": [],
    "raw missing": [],
    "shards a file": [],
    "shards inside raw": [],
    "shards read-only": [],
    "workers -1": ["--workers", "-1"],
    "workers text": ["--workers", "two"],
    "val fraction 2": ["--val-fraction", "2"],
    "val fraction nan": ["--val-fraction", "nan"],
    "corpus unknown": ["--corpus", "youtube"],
}


@pytest.mark.parametrize("case", DATA_FUZZ)
def test_fuzz_data(tmp_path, synthetic_corpus, capsys, case):
    raw, shards = tmp_path / "raw", tmp_path / "shards"
    _fuzz_corpus(raw, synthetic_corpus, case)
    if case in ("raw empty", "raw a file", "raw missing"):
        shutil.rmtree(raw)
        if case == "raw empty":
            raw.mkdir()
        elif case == "raw a file":
            raw.write_text("a corpus")
    if case == "shards a file":
        shards.write_text("shards")
    elif case == "shards inside raw":
        shards = raw / "shards"
    elif case == "shards read-only":
        if not Path("/sys").is_dir():
            pytest.skip("needs Linux's read-only /sys")
        shards = Path("/sys/macl-shards")
    argv = ["--corpus", "folder", "--raw", str(raw), "--shards", str(shards), "--workers", "0", *DATA_FUZZ[case]]
    before = snapshot(tmp_path, leave_out=shards)
    try:
        code = preprocessing.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code in (1, 2)
    one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path, leave_out=shards) == before
    assert not (shards / "index.json").exists() or case == "shards a file"
