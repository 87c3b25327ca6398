"""Generation speed and memory: a 10 s clip from a 256x256 photo, split into its stages, and the peak memory
of a whole run for 10 s and for 10 minutes of speech.

Stages, timed one after the other on the same frames as ``experiments.generate.write_video`` runs them: audio
features (mel windows of each chunk), landmarks (SFE + MDN, absolute pose, back into the crop), rendering
(batches of 8), paste-back into the photo, and encoding (H.264 + AAC through the streaming writer). The whole
run (``write_video``) gives frames/s and the real-time factor (seconds of compute per second of video; below 1
is faster than real time). The models are ``runs/mdn/latest`` and ``runs/renderer/latest`` when they exist,
else the default-size LightningModules at random initialisation (their speed does not depend on training).
Peak memory is the maximum resident set of a fresh process that runs the whole generation (ffmpeg apart), for
10 s and for ``BENCH_LONG_SECONDS`` (default 600) of speech.
"""

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile
import torch
from skimage import data

from datamodules import face
from datamodules.media import SAMPLE_RATE, VideoStreamWriter, decode_speech
from datamodules.photo import reference_from_photo
from experiments.bench import Options
from experiments.bench.report import Row, at_least
from experiments.generate import RENDER_BATCH, Models, paste_region, resolve_checkpoint, write_video
from experiments.streaming import CHUNK_FRAMES, audio_features
from lightning_modules.checkpoints import CheckpointError

CLIP_SECONDS = 10.0
LONG_SECONDS = float(os.environ.get("BENCH_LONG_SECONDS", 600))
PHOTO_SIZE = 256


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced 16 kHz signal with syllable-like loudness: what the models see does not change their speed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 10)) + 0.05 * rng.normal(size=len(t))
    return (0.2 * voice * np.clip(np.sin(2 * np.pi * 2.7 * t), 0, None) ** 2).astype(np.float32)


def load_models() -> tuple[Models, str]:
    """The trained models when ``runs/*/latest`` exist, else randomly initialised default-size ones."""
    try:
        return Models.load(resolve_checkpoint("runs/mdn/latest", "mdn"),
                           resolve_checkpoint("runs/renderer/latest", "renderer")), "runs/*/latest"  # fmt: skip
    except CheckpointError:
        from lightning_modules.mdn import LandmarkMDN
        from lightning_modules.renderer import FaceRenderer

        return Models(LandmarkMDN().eval(), FaceRenderer().eval()), "default size, random weights"


def _reference():
    return reference_from_photo(cv2.resize(data.astronaut(), (PHOTO_SIZE, PHOTO_SIZE), interpolation=cv2.INTER_AREA))


def stage_seconds(models: Models, reference, speech, out: Path) -> dict[str, float]:
    """Seconds spent in each stage over every frame of ``speech`` (the chain of ``write_video``, chunk by chunk)."""
    spent = dict.fromkeys(("audio features", "landmarks", "rendering", "paste-back", "encoding"), 0.0)
    crop = torch.from_numpy(reference.crop).permute(2, 0, 1).float().div(255.0)[None]
    crop_landmarks = torch.from_numpy(reference.crop_landmarks)[None]
    registered = torch.from_numpy(reference.registered)
    height, width = reference.photo.shape[:2]
    writer = VideoStreamWriter(out, width, height, audio=speech.wav)
    with torch.inference_mode():
        for start in range(0, speech.frames, CHUNK_FRAMES):
            stop = min(start + CHUNK_FRAMES, speech.frames)
            began = time.perf_counter()
            windows = audio_features(speech, start, stop)[None]
            spent["audio features"] += time.perf_counter() - began
            began = time.perf_counter()
            result = models.mdn.generate(torch.from_numpy(windows), registered, mode="max")
            pose = face.absolute_pose(result["pose"][0].numpy(), reference.pose)
            targets = torch.from_numpy(face.unregister(result["registered"][0].numpy(), pose, reference.depth))
            spent["landmarks"] += time.perf_counter() - began
            for first in range(0, len(targets), RENDER_BATCH):
                batch = targets[first : first + RENDER_BATCH]
                began = time.perf_counter()
                rendered = models.renderer.render(crop.expand(len(batch), -1, -1, -1),
                                                  crop_landmarks.expand(len(batch), -1, -1), batch)  # fmt: skip
                faces = (rendered.clamp(0, 1) * 255.0 + 0.5).byte().permute(0, 2, 3, 1).numpy()
                spent["rendering"] += time.perf_counter() - began
                for rendered_face in faces:
                    began = time.perf_counter()
                    frame = paste_region(reference, rendered_face, 0.1)
                    spent["paste-back"] += time.perf_counter() - began
                    began = time.perf_counter()
                    writer.write(frame)
                    spent["encoding"] += time.perf_counter() - began
    began = time.perf_counter()
    writer.close()
    spent["encoding"] += time.perf_counter() - began
    return spent


def peak_memory_child(seconds: float) -> None:
    """In a fresh process: generates ``seconds`` of video and prints its peak resident memory in MiB."""
    models, _ = load_models()
    with tempfile.TemporaryDirectory() as scratch:
        soundfile.write(Path(scratch) / "speech.wav", speech_like(seconds), SAMPLE_RATE)
        speech = decode_speech(Path(scratch) / "speech.wav", Path(scratch) / "decoded.wav")
        write_video(_reference(), speech, models, Path(scratch) / "out.mp4")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_memory_mib(seconds: float) -> float:
    code = f"from experiments.bench.generate import peak_memory_child; peak_memory_child({seconds})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def run(options: Options) -> list[Row]:
    models, which = load_models()
    reference = _reference()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        soundfile.write(Path(scratch) / "speech.wav", speech_like(CLIP_SECONDS), SAMPLE_RATE)
        speech = decode_speech(Path(scratch) / "speech.wav", Path(scratch) / "decoded.wav")
        soundfile.write(Path(scratch) / "short.wav", speech_like(1.0), SAMPLE_RATE)
        short = decode_speech(Path(scratch) / "short.wav", Path(scratch) / "short-decoded.wav")
        stage_seconds(models, reference, short, Path(scratch) / "warm-up.mp4")  # imports, allocator, page cache
        spent = stage_seconds(models, reference, speech, Path(scratch) / "stages.mp4")
        total = sum(spent.values())
        for stage, seconds in spent.items():
            rows.append(Row(f"{stage} ({which})", 1e3 * seconds / speech.frames, "ms/frame",
                            note=f"{100 * seconds / total:.1f}% of the stages"))  # fmt: skip
        began = time.perf_counter()
        write_video(reference, speech, models, Path(scratch) / "whole.mp4")
        whole = time.perf_counter() - began
    rows.append(Row(f"whole run, {CLIP_SECONDS:g} s clip, {PHOTO_SIZE}x{PHOTO_SIZE} photo", speech.frames / whole,
                    "frames/s", at_least(30), note=f"real-time factor {whole / speech.seconds:.2f}"))  # fmt: skip
    for seconds in (CLIP_SECONDS, LONG_SECONDS):
        rows.append(Row(f"peak memory of a whole run, {seconds:g} s of speech", peak_memory_mib(seconds), "MiB"))
    return rows
