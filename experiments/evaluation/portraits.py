"""Fidelity on package portraits at their own resolution, today's generation path beside the photo-resolution one.

    python -m experiments.evaluation.portraits --mdn runs/mdn/demo --renderer runs/renderer/demo \
        --audio outputs/demo-voice.wav [--seconds 20] [--out results/fidelity]

Each portrait (matplotlib's Grace Hopper at 512x600, skimage's astronaut at 512x512, and Grace Hopper scaled up
so that her face is about 400 px across) speaks the recording (repeated to ``--seconds``) twice, in one run:
``crop`` (the face rendered at 256 and pasted back, no blinks: the path before the photo-resolution one) and
``photo`` (the face moved at the photo's resolution, blinking). Each video is measured from its encoded frames
(:mod:`experiments.evaluation.fidelity`, MediaPipe's landmarks of the video): upper-face sharpness over the
photo's, the mean change outside the face box, flicker, blinks per minute, and the frames per second of the
generation itself. Writes ``<out>/portraits.json`` and ``.md`` with the goals of the fidelity issue marked.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile
from matplotlib import cbook
from PIL import Image
from skimage import data

from datamodules.media import SAMPLE_RATE, decode_speech, read_audio, read_clip
from datamodules.photo import reference_from_photo
from experiments.bench.report import machine
from experiments.evaluation.columns import commit
from experiments.evaluation.fidelity import (
    blink_rate,
    change_outside,
    face_region_mask,
    flicker,
    upper_face_sharpness,
)
from experiments.evaluation.measure import track_faces
from experiments.generate import Models, write_video

FACE_PIXELS = 400  # the landmark extent of the scaled-up portrait
GOALS = {  # measure -> (low, high): the fidelity issue's "done when"
    "sharpness_ratio": (0.85, 1.2),
    "outside_change": (0.0, 2.0),
    "blinks_per_minute": (10.0, 30.0),
}


def grace_hopper() -> np.ndarray:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def portraits() -> dict[str, np.ndarray]:
    """The portraits, RGB uint8 at their own sizes; the last is scaled (bicubic) to a face of ``FACE_PIXELS``."""
    hopper = grace_hopper()
    extent = np.ptp(reference_from_photo(hopper).landmarks[:, :2], axis=0).max()
    factor = FACE_PIXELS / extent
    large = cv2.resize(hopper, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return {
        "grace_hopper 512x600": hopper,
        "astronaut 512x512": data.astronaut(),
        f"grace_hopper {large.shape[1]}x{large.shape[0]} (face {FACE_PIXELS} px)": large,
    }


def repeated_speech(audio: Path, seconds: float, scratch: Path):
    """The recording at ``audio`` repeated to ``seconds``, decoded as generation decodes it."""
    waveform = read_audio(audio)
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(waveform)))
    soundfile.write(scratch / "speech.wav", np.tile(waveform, repeats)[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE)
    return decode_speech(scratch / "speech.wav", scratch / "decoded.wav")


def measure(reference, speech, models: Models, path: Path, resolution: str) -> dict[str, float]:
    """Generates one video (``crop``: no blinks, as before; ``photo``: with blinks) and measures it."""
    began = time.perf_counter()
    write_video(reference, speech, models, path, resolution=resolution, blinks=resolution == "photo")
    seconds = time.perf_counter() - began
    frames, _ = read_clip(path)
    track = track_faces(frames)
    photo_sharpness = upper_face_sharpness(reference.photo[None], reference.landmarks[None])
    region = face_region_mask(reference.photo.shape, reference.box)
    return {
        "frames/s": len(frames) / seconds,
        "sharpness_ratio": upper_face_sharpness(frames, track.landmarks) / photo_sharpness,
        "outside_change": change_outside(frames, region),
        "flicker_face": flicker(frames, region),
        "blinks_per_minute": blink_rate(frames),
        "face_found": track.face_ratio,
    }


def machine_line() -> str:
    """The CPU, its cores, torch's threads and torch's version, in one line."""
    info = machine()
    threads, torch_version = info["torch_threads"], info["versions"]["torch"]
    return f"{info['cpu']}, {info['cores']} cores, {threads} torch threads, torch {torch_version}"


def verdict(name: str, value: float) -> str:
    if name not in GOALS:
        return ""
    low, high = GOALS[name]
    return " (met)" if low <= value <= high else " (not met)"


def markdown(record: dict) -> str:
    lines = [
        "# Fidelity on portraits at their own resolution",
        "",
        f"`{record['command']}`",
        "",
        f"commit {record['commit']}, {record['date']}; {record['machine']}; models {record['mdn']}, "
        f"{record['renderer']}; speech {record['audio']} repeated to {record['seconds']:g} s. Goals: sharpness "
        "over the photo's 0.85-1.2, change outside the face box at most 2/255 per frame, 10-30 blinks a minute. "
        "Frames/s are of one run on a shared machine: compare the two paths within it, not across runs.",
        "",
        "| portrait | path | " + " | ".join(record["rows"][0]["values"]) + " |",
        "|---|---|" + "---|" * len(record["rows"][0]["values"]),
    ]
    for row in record["rows"]:
        cells = [f"{value:.3g}{verdict(name, value)}" for name, value in row["values"].items()]
        lines.append(f"| {row['portrait']} | {row['path']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluation.portraits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mdn", default="runs/mdn/latest", help="MDN checkpoint or run folder")
    parser.add_argument("--renderer", default="runs/renderer/latest", help="renderer checkpoint or run folder")
    parser.add_argument("--audio", default="outputs/demo-voice.wav", help="the speech (repeated to --seconds)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    parser.add_argument("--out", default="results/fidelity", help="folder of portraits.json and portraits.md")
    args = parser.parse_args(argv)
    models = Models.load(args.mdn, args.renderer)
    rows = []
    with tempfile.TemporaryDirectory(prefix="macl-portraits-") as scratch:
        speech = repeated_speech(Path(args.audio), args.seconds, Path(scratch))
        for name, photo in portraits().items():
            reference = reference_from_photo(photo, name)
            for resolution in ("crop", "photo"):
                values = measure(reference, speech, models, Path(scratch) / f"{resolution}.mp4", resolution)
                rows.append({"portrait": name, "path": resolution, "face_box_px": reference.box.side, "values": values})
                print(name, resolution, {key: round(value, 3) for key, value in values.items()}, flush=True)
    record = {
        "command": "python -m experiments.evaluation.portraits " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_line(),
        "mdn": args.mdn,
        "renderer": args.renderer,
        "audio": args.audio,
        "seconds": args.seconds,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "portraits.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "portraits.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
