"""``make demo``'s two own steps: pick a held-out face and voice from the embedded corpus, and draw the result.

    python -m experiments.demo inputs --shards data/shards/synthetic --out outputs   # demo-photo.png, demo-voice.wav
    python -m experiments.demo picture --photo outputs/demo-photo.png --video outputs/demo.mp4 --out outputs/demo.png

The face and the voice come from the test split (speakers that no stage trained on). The photo is one frame
of a test clip (the most closed mouth, by the clip's ground-truth sidecar when it has one); when the test split
holds a person whose base photograph no training speaker uses, that person is preferred. The voice is a clip of
another test speaker where there is one.
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import soundfile
from PIL import Image

from datamodules.media import SAMPLE_RATE, read_clip, read_video
from datamodules.preprocess import read_manifest

STRIP_FRAMES = 5
STRIP_HEIGHT = 256


def _sidecar(raw: Path, clip_id: str) -> dict:
    path = raw / f"{clip_id}.truth.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _voice(sidecar: dict) -> str | None:
    voice = sidecar.get("voice")
    return f"{voice.get('engine')}/{voice.get('variant')}" if isinstance(voice, dict) else voice


def pick_inputs(shards: str | Path) -> tuple[Path, Path, Path]:
    """The corpus root and the clips that give the demo's face and voice: ``(raw, face clip, voice clip)``.

    Both come from the test split (val when there is none). The voice is chosen first: an engine and variant
    that no training clip uses when there is one. The face then prefers a person whose base photograph no
    training clip uses, and another speaker than the voice's."""
    index = json.loads((Path(shards) / "index.json").read_text())
    raw = Path(index["raw"])
    splits = index["splits"]
    test = splits.get("test") or splits.get("val")
    if not test:
        raise ValueError(f"{shards} has no test or validation clips to take a held-out face and voice from.")
    sidecars = {clip: _sidecar(raw, clip) for clip in test}
    trained = [_sidecar(raw, clip) for clip in splits.get("train", [])]
    trained_photos, trained_voices = {s.get("photo") for s in trained}, {_voice(s) for s in trained}
    speakers = {clip: entry["speaker"] for clip, entry in read_manifest(shards).items()}
    voice_clip = min(test, key=lambda clip: (_voice(sidecars[clip]) in trained_voices, test.index(clip)))
    face_clip = min(
        (clip for clip in test if clip != voice_clip or len(test) == 1),
        key=lambda clip: (sidecars[clip].get("photo") in trained_photos, speakers.get(clip) == speakers.get(voice_clip),
                          test.index(clip)),
    )  # fmt: skip
    return raw, raw / f"{face_clip}.mp4", raw / f"{voice_clip}.mp4"


def write_inputs(shards: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Writes ``demo-photo.png`` and ``demo-voice.wav`` into ``out`` from the held-out clips; returns them."""
    raw, face_clip, voice_clip = pick_inputs(shards)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames, _ = read_clip(face_clip)
    opening = _sidecar(raw, face_clip.relative_to(raw).with_suffix("").as_posix()).get("mouth_opening")
    frame = frames[int(np.argmin(opening[: len(frames)]))] if opening else frames[0]
    _, audio = read_clip(voice_clip)
    photo, voice = out / "demo-photo.png", out / "demo-voice.wav"
    Image.fromarray(frame).save(photo)
    soundfile.write(voice, audio, SAMPLE_RATE)
    print(f"face: a frame of {face_clip}; voice: {voice_clip}")
    return photo, voice


def _height(image: np.ndarray, height: int) -> np.ndarray:
    return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)


def draw_picture(photo: str | Path, video: str | Path, out: str | Path, frames: int = STRIP_FRAMES) -> Path:
    """A side-by-side picture: the photo, then ``frames`` frames spread over the video, one row."""
    images = read_video(video)
    chosen = images[np.linspace(0, len(images) - 1, frames + 2).round().astype(int)[1:-1]]
    gap = np.full((STRIP_HEIGHT, 8, 3), 255, np.uint8)
    tiles = [
        _height(np.asarray(Image.open(photo).convert("RGB")), STRIP_HEIGHT),
        np.full((STRIP_HEIGHT, 24, 3), 255, np.uint8),
    ]
    for image in chosen:
        tiles += [_height(image, STRIP_HEIGHT), gap]
    Image.fromarray(np.concatenate(tiles[:-1], axis=1)).save(out)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inputs = commands.add_parser("inputs", help="write demo-photo.png and demo-voice.wav from held-out clips")
    inputs.add_argument("--shards", default="data/shards/synthetic")
    inputs.add_argument("--out", default="outputs")
    picture = commands.add_parser("picture", help="photo | frames of the video, side by side")
    picture.add_argument("--photo", default="outputs/demo-photo.png")
    picture.add_argument("--video", default="outputs/demo.mp4")
    picture.add_argument("--out", default="outputs/demo.png")
    args = parser.parse_args(argv)
    try:
        if args.command == "inputs":
            write_inputs(args.shards, args.out)
        else:
            print(f"wrote {draw_picture(args.photo, args.video, args.out)}")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
