"""Generation speed and memory, before and after the photo-resolution path and the parallel workers, side by side.

Two photos: skimage's astronaut scaled to 256x256 (a face box of about 180 px) and matplotlib's Grace Hopper
scaled so that her face box is 512 px. Three paths on each: **before** (the renderer in eager PyTorch, its
256x256 render pasted back into the photo, no blinks, one worker on every thread: generation before the
photo-resolution path), **one worker** (the refinement by ONNX Runtime on every thread, the motion applied to the
photo's own pixels at its resolution, blinks on: generation before the parallel workers) and **after** (the same,
one worker per core, each on one thread: :mod:`experiments.generation.workers`). For each, on a
``BENCH_CLIP_SECONDS`` (default 10) clip: the stages, timed one after the other on the same frames as
``experiments.generate.write_video`` runs them (audio features, landmarks, the renderer at 256, paste-back or the
photo warp, encoding; for **after**, one worker's stages on one thread), and the whole run (``write_video``) as
frames/s and real-time factor (seconds of compute per second of video; below 1 is faster than real time), the
paths alternating so that a busy machine slows them alike. Also: the PSNR of the ONNX Runtime renderer's 256
frames against eager PyTorch's and of the parallel workers' video against one worker's (the paths meant to be
unchanged), the time to load the models, a fresh process's start-up step by step to its first frame (as ``make
generate`` runs it, on the 256x256 photo), and the peak memory of a fresh process generating the clip and
``BENCH_LONG_SECONDS`` (default 600) of speech. The models are ``make generate``'s defaults (``runs/*/latest``, else
the shipped ``weights/``) when they exist, else the default-size LightningModules at random initialisation (their
speed does not depend on training).
"""

import copy
import json
import math
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
from matplotlib import cbook
from PIL import Image
from skimage import data

from datamodules import face
from datamodules.media import SAMPLE_RATE, VideoStreamWriter, decode_speech, read_video
from datamodules.photo import reference_from_photo
from experiments.bench import Options
from experiments.bench.report import Row, at_least
from experiments.generate import (
    RENDER_BATCH,
    Models,
    paste_region,
    reference_tensors,
    render_batch,
    resolve_checkpoint,
    write_video,
)
from experiments.generation.compositing import PhotoCompositor
from experiments.generation.workers import default_workers, one_thread_per_worker
from experiments.streaming import CHUNK_FRAMES, audio_features
from lightning_modules.checkpoints import CheckpointError

CLIP_SECONDS = float(os.environ.get("BENCH_CLIP_SECONDS", 10))
LONG_SECONDS = float(os.environ.get("BENCH_LONG_SECONDS", 600))
PHOTO_SIZE = 256
FACE_BOX = 512  # the larger photo's face box, pixels
GOALS = {f"{PHOTO_SIZE}x{PHOTO_SIZE} photo": 30.0, f"{FACE_BOX}-px face box": 15.0}  # frames/s of a whole run, after


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced 16 kHz signal with syllable-like loudness: what the models see does not change their speed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 10)) + 0.05 * rng.normal(size=len(t))
    return (0.2 * voice * np.clip(np.sin(2 * np.pi * 2.7 * t), 0, None) ** 2).astype(np.float32)


def load_models() -> tuple[Models, str]:
    """``make generate``'s default models as it loads them (refinement by ONNX Runtime: ``runs/*/latest``, else the
    shipped ``weights/``), else randomly initialised default-size ones (also by ONNX Runtime)."""
    try:
        models = Models.load(
            resolve_checkpoint("runs/mdn/latest", "mdn"), resolve_checkpoint("runs/renderer/latest", "renderer")
        )
        return models, "make generate's default"
    except CheckpointError:
        from lightning_modules.mdn import LandmarkMDN
        from lightning_modules.renderer import FaceRenderer

        renderer = FaceRenderer(mask_bias=-2.0, paint_margin=4.0, paint_gain=4.0).eval()
        renderer.net.use_onnx_runtime(threads=1)
        return Models(LandmarkMDN().eval(), renderer), "default size, random weights"


def with_refinement(models: Models, onnx_threads: int | None) -> Models:
    """The same models with the refinement in eager PyTorch (``onnx_threads`` None: generation before ONNX Runtime)
    or by ONNX Runtime on ``onnx_threads`` threads (generation before the parallel workers)."""
    runtime, models.renderer.net.runtime = models.renderer.net.runtime, None  # an ONNX Runtime session: no copy
    try:
        renderer = copy.deepcopy(models.renderer)
    finally:
        models.renderer.net.runtime = runtime
    if onnx_threads:
        renderer.net.use_onnx_runtime(onnx_threads)
    return Models(models.mdn, renderer)


def photos() -> dict[str, np.ndarray]:
    """The benchmark's photos: a 256x256 portrait and one whose face box is ``FACE_BOX`` pixels."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        hopper = np.asarray(image.convert("RGB"))
    factor = FACE_BOX / reference_from_photo(hopper).box.side
    large = cv2.resize(hopper, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(data.astronaut(), (PHOTO_SIZE, PHOTO_SIZE), interpolation=cv2.INTER_AREA)
    return {f"{PHOTO_SIZE}x{PHOTO_SIZE} photo": small, f"{FACE_BOX}-px face box": large}


def _reference():
    return reference_from_photo(photos()[f"{PHOTO_SIZE}x{PHOTO_SIZE} photo"])


def stage_seconds(models: Models, reference, speech, out: Path, resolution: str, workers: int) -> dict[str, float]:
    """Seconds spent in each stage over every frame of ``speech`` (the chain of ``write_video``, chunk by chunk;
    ``resolution`` ``crop``: render and paste back, ``photo``: motion and the photo warp) in batches of
    ``render_batch(workers)``, on one thread where ``workers`` is above 1 (one worker's share of the work), else on
    every thread."""
    with one_thread_per_worker(workers):
        return _stage_seconds(models, reference, speech, out, resolution, render_batch(workers))


def _stage_seconds(models: Models, reference, speech, out: Path, resolution: str, batch_size: int) -> dict[str, float]:
    spent = dict.fromkeys(
        ("audio features", "landmarks", "renderer at 256", "paste-back / photo warp", "encoding"), 0.0
    )
    crop, crop_landmarks = reference_tensors(reference)
    registered = torch.from_numpy(reference.registered)
    compositor = PhotoCompositor(reference.photo, reference.box) if resolution == "photo" else None
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
            for batch in targets.split(batch_size):
                inputs = crop.expand(len(batch), -1, -1, -1), crop_landmarks.expand(len(batch), -1, -1), batch
                began = time.perf_counter()
                if compositor is None:
                    rendered = models.renderer.render(*inputs)
                    faces = (rendered.clamp(0, 1) * 255.0 + 0.5).byte().permute(0, 2, 3, 1).numpy()
                else:
                    layers = compositor.frame_layers(models.renderer.motion(*inputs))
                spent["renderer at 256"] += time.perf_counter() - began
                for index in range(len(batch)):
                    began = time.perf_counter()
                    if compositor is None:
                        frame = paste_region(reference, faces[index], 0.1)
                    else:
                        frame = compositor.frame(*layers[index])
                    spent["paste-back / photo warp"] += time.perf_counter() - began
                    began = time.perf_counter()
                    writer.write(frame)
                    spent["encoding"] += time.perf_counter() - began
    began = time.perf_counter()
    writer.close()
    spent["encoding"] += time.perf_counter() - began
    return spent


def unchanged_psnr(before: Models, after: Models, reference) -> float:
    """PSNR (dB) of the ONNX Runtime renderer's 256 frames against eager PyTorch's, on a batch of moved faces."""
    crop, crop_landmarks = reference_tensors(reference)
    targets = crop_landmarks.repeat(RENDER_BATCH, 1, 1)
    targets[..., :2] += torch.linspace(-6, 6, RENDER_BATCH)[:, None, None]
    targets[:, face.LOWER_INNER_LIP, 1] += 8.0  # an open mouth: the refinement paints
    inputs = crop.expand(RENDER_BATCH, -1, -1, -1), crop_landmarks.expand(RENDER_BATCH, -1, -1), targets
    return psnr_db((before.renderer.render(*inputs) - after.renderer.render(*inputs)).square().mean().item())


def psnr_db(mean_squared_error: float) -> float:
    """PSNR (dB) of a mean squared error in [0, 1] colour units, capped at 120 dB (the same frames)."""
    return -10 * math.log10(max(mean_squared_error, 1e-12))


def peak_memory_child(seconds: float) -> None:
    """In a fresh process: generates ``seconds`` of video and prints its peak resident memory in MiB."""
    models, _ = load_models()
    with tempfile.TemporaryDirectory() as scratch:
        soundfile.write(Path(scratch) / "speech.wav", speech_like(seconds), SAMPLE_RATE)
        speech = decode_speech(Path(scratch) / "speech.wav", Path(scratch) / "decoded.wav")
        write_video(_reference(), speech, models, Path(scratch) / "out.mp4")
    print(peak_resident_mib())


def peak_resident_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` where Linux gives it (the peak of this program alone;
    ``ru_maxrss`` also keeps the peak of the process it was forked from, before ``exec``), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


STARTUP_CODE = """
import json, sys, tempfile, time
began = time.perf_counter()
from experiments import generate
imported = time.perf_counter()
image, audio, mdn, renderer = sys.argv[1:5]
checkpoints = generate.resolve_checkpoint(mdn, "mdn"), generate.resolve_checkpoint(renderer, "renderer")
models = generate.Models.load(*checkpoints)
loaded = time.perf_counter()
reference = generate.load_reference(image)
found = time.perf_counter()
first = []
with tempfile.TemporaryDirectory() as scratch:
    speech = generate.decode_speech(audio, scratch + "/speech.wav")
    decoded = time.perf_counter()
    generate.write_video(reference, speech, models, scratch + "/out.mp4",
                         on_frames=lambda count: first.append(time.perf_counter()))
print(json.dumps({"import": imported - began, "models": loaded - imported, "photo": found - loaded,
                  "speech": decoded - found, "first frame": first[0] - decoded, "total": first[0] - began}))
"""
STARTUP_STEPS = {  # what the start-up child times -> its row's name
    "import": "import experiments.generate",
    "models": "load both models (refinement exported to ONNX Runtime)",
    "photo": "read the photo, find and crop its face",
    "speech": "decode the speech",
    "first frame": "from the decoded speech to the first frame rendered",
    "total": "time to the first frame, from the start of the program",
}


def startup_seconds(image: Path, audio: Path, mdn: str = "runs/mdn/latest", renderer: str = "runs/renderer/latest"):
    """Seconds of each step from a fresh Python process's start to its first frame (``STARTUP_STEPS``), as
    ``make generate`` takes them, for the photo file ``image`` and the speech file ``audio``."""
    return json.loads(fresh_process_answer(STARTUP_CODE, str(image), str(audio), mdn, renderer))


def fresh_process_answer(code: str, *arguments: str) -> str:
    """The last line that Python ``code`` prints, run with ``arguments`` in a fresh process (nothing imported or
    allocated by this one counts in what it measures)."""
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def peak_memory_mib(seconds: float) -> float:
    code = f"from experiments.bench.generate import peak_memory_child; peak_memory_child({seconds})"
    return float(fresh_process_answer(code))


def video_psnr(first: Path, second: Path) -> float:
    """PSNR (dB) of one video's decoded frames against another's (capped at 120 dB: the same frames)."""
    pairs = zip(read_video(first), read_video(second), strict=True)
    error = np.mean([np.mean((a.astype(np.float32) - b) ** 2) for a, b in pairs])  # frame by frame: little memory
    return psnr_db(error / 255.0**2)


def measure() -> list[dict]:
    began = time.perf_counter()
    after, which = load_models()
    load_seconds = time.perf_counter() - began
    threads, workers = torch.get_num_threads(), default_workers()
    paths = {  # name -> models, resolution, workers
        "before (eager, 256 pasted back)": (with_refinement(after, None), "crop", 1),
        f"one worker (ONNX Runtime on {threads} threads, photo resolution)": (
            with_refinement(after, threads), "photo", 1),
        f"after (ONNX Runtime, photo resolution, {workers} workers)": (after, "photo", workers),
    }  # fmt: skip
    before, one_worker, parallel = paths
    rows = [{"measurement": f"model load, refinement exported to ONNX Runtime ({which})", "seconds": load_seconds}]
    with tempfile.TemporaryDirectory() as scratch:
        soundfile.write(Path(scratch) / "speech.wav", speech_like(CLIP_SECONDS), SAMPLE_RATE)
        speech = decode_speech(Path(scratch) / "speech.wav", Path(scratch) / "decoded.wav")
        soundfile.write(Path(scratch) / "short.wav", speech_like(1.0), SAMPLE_RATE)
        short = decode_speech(Path(scratch) / "short.wav", Path(scratch) / "short-decoded.wav")
        for photo_name, photo in photos().items():
            reference = reference_from_photo(photo)
            rows.append({"measurement": f"PSNR of the ONNX Runtime renderer against eager, 256 crop ({photo_name})",
                         "dB": unchanged_psnr(paths[before][0], after, reference)})  # fmt: skip
            for path_name, (models, resolution, count) in paths.items():
                stage_seconds(models, reference, short, Path(scratch) / "warm-up.mp4", resolution, count)  # caches
                spent = stage_seconds(models, reference, speech, Path(scratch) / "stages.mp4", resolution, count)
                total = sum(spent.values())
                for stage, seconds in spent.items():
                    rows.append({"measurement": f"{photo_name}, {path_name}: {stage}",
                                 "frames/s": speech.frames / seconds, "ms/frame": 1e3 * seconds / speech.frames,
                                 "share %": 100 * seconds / total})  # fmt: skip
            whole = dict.fromkeys(paths, 0.0)
            videos = {path_name: Path(scratch) / f"whole-{index}.mp4" for index, path_name in enumerate(paths)}
            for _ in range(2):  # alternating, so that a busy machine slows the paths alike
                for path_name, (models, resolution, count) in paths.items():
                    began = time.perf_counter()
                    write_video(reference, speech, models, videos[path_name], resolution=resolution,
                                blinks=resolution == "photo", workers=count)  # fmt: skip
                    whole[path_name] += (time.perf_counter() - began) / 2
            rows.append({"measurement": f"PSNR of the {workers} workers' video against one worker's ({photo_name})",
                         "dB": video_psnr(videos[parallel], videos[one_worker])})  # fmt: skip
            for path_name, seconds in whole.items():
                rows.append({"measurement": f"{photo_name}, {path_name}: whole run, {CLIP_SECONDS:g} s clip",
                             "frames/s": speech.frames / seconds, "ms/frame": 1e3 * seconds / speech.frames,
                             "real-time factor": seconds / speech.seconds})  # fmt: skip
        Image.fromarray(photos()[f"{PHOTO_SIZE}x{PHOTO_SIZE} photo"]).save(Path(scratch) / "photo.png")
        startup = startup_seconds(Path(scratch) / "photo.png", Path(scratch) / "speech.wav")
        for step, seconds in startup.items():
            rows.append({"measurement": f"start-up, a fresh process, {PHOTO_SIZE}-px photo: {STARTUP_STEPS[step]}",
                         "seconds": seconds})  # fmt: skip
    for seconds in (CLIP_SECONDS, LONG_SECONDS):
        rows.append({"measurement": f"peak memory of a whole run (after), {seconds:g} s of speech",
                     "MiB": peak_memory_mib(seconds)})  # fmt: skip
    return rows


def run(options: Options) -> list[Row]:
    """:func:`measure`'s figures as report rows, one per unit; a whole run of the new path carries its goal."""
    rows = []
    for measured in measure():
        name = measured["measurement"]
        for unit, value in measured.items():
            if unit == "measurement":
                continue
            photo = next((photo for photo in GOALS if name.startswith(photo)), None)
            whole_after = unit == "frames/s" and "whole run" in name and "after" in name and photo is not None
            rows.append(Row(name, float(value), unit, at_least(GOALS[photo]) if whole_after else None))
    return rows
