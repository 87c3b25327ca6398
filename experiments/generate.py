"""``make generate``: a talking-head video from one photo and one speech recording.

    python -m experiments.generate --image photo.jpg --audio speech.m4a --out video.mp4 [--mode max|mean|sample]
        [--samples K] [--seed S] [--lip-gain G] [--mdn runs/mdn/latest] [--renderer runs/renderer/latest]

The chain: the photo's face (:mod:`datamodules.photo`) gives the reference crop, landmarks and pose; the
speech, decoded to 16 kHz mono, is cut into chunks (:mod:`experiments.streaming`); per chunk the SFE + MDN
give registered landmarks and pose relative to the photo's, the lips moved ``--lip-gain`` times as far from
the photo's (``amplify_lips``), made absolute and put back in the crop (``face.absolute_pose``,
``face.unregister``); the renderer makes every 256x256 face, which is pasted back
into the whole photo with a feathered edge and streamed to an H.264 + AAC file at 25 fps
(:class:`datamodules.media.VideoStreamWriter`). Memory stays bounded whatever the recording's length.

``--samples K`` (with ``--mode sample``) writes K videos, ``<out>-seed<S+k>.mp4`` for k = 0 .. K-1, each the
video that ``--samples 1 --seed S+k`` writes. Bad input ends with one sentence and exit status 1, and leaves
no output file.
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules import face
from datamodules.media import MediaError, Speech, VideoStreamWriter, decode_speech
from datamodules.photo import PhotoError, Reference, load_reference
from experiments.streaming import CHUNK_FRAMES, OVERLAP_FRAMES, landmark_chunks
from lightning_modules.checkpoints import CheckpointError

MODES = ("max", "mean", "sample")
STAGES = {  # stage -> (its name in messages, the command that trains it, the flag that picks a checkpoint)
    "mdn": ("landmark MDN", "make train-mdn", "MDN=<checkpoint> (--mdn)"),
    "renderer": ("face renderer", "make train-renderer", "RENDERER=<checkpoint> (--renderer)"),
}
CHUNK_SEED_STRIDE = 1_000_003  # the seed of chunk c of sample k is seed + k + c * stride
RENDER_BATCH = 8
# The MDN under-predicts how far the mouth moves: on the embedded corpus's held-out speakers its opening spread as
# widely as the truth's with the lips moved 1.5 times as far (docs/generation.md).
LIP_GAIN = 1.5
LIPS = slice(48, 68)


class GenerationError(ValueError):
    """Bad arguments for generation; the message is one sentence."""


def resolve_checkpoint(path: str | Path, stage: str) -> Path:
    """The checkpoint file that ``path`` names for ``stage``: the file itself, or in a run folder (such as
    ``runs/<stage>/latest``) the best checkpoint of its ``metrics.json``, else ``checkpoints/last.ckpt``."""
    name, command, flag = STAGES[stage]
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        metrics = path / "metrics.json"
        candidates = []
        if metrics.is_file():
            best = json.loads(metrics.read_text()).get("best_checkpoint")
            if best:
                candidates += [Path(best), path / "checkpoints" / Path(best).name]
        candidates.append(path / "checkpoints" / "last.ckpt")
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    raise CheckpointError(f"No {name} checkpoint at {path}; train one with `{command}` or pass {flag}.")


@dataclass
class Models:
    """The two trained stages that generation chains: ``mdn.generate`` and ``renderer.render`` (the hand-off APIs)."""

    mdn: torch.nn.Module
    renderer: torch.nn.Module

    @classmethod
    def load(cls, mdn: str | Path, renderer: str | Path) -> "Models":
        from lightning_modules.mdn import load_landmark_mdn
        from lightning_modules.renderer import load_face_renderer

        return cls(
            load_landmark_mdn(resolve_checkpoint(mdn, "mdn")),
            load_face_renderer(resolve_checkpoint(renderer, "renderer")),
        )


def paste_region(reference: Reference, crop: np.ndarray, feather: float) -> np.ndarray:
    """The photo with a rendered ``crop`` ``[256, 256, 3]`` pasted back (``CropBox.paste``), computed only over
    the box's pixels (outside it the photo is untouched), so the cost does not grow with the photo's size."""
    box, photo = reference.box, reference.photo
    height, width = photo.shape[:2]
    half = box.side / 2
    x0, y0 = max(int(np.floor(box.centre_x - half)) - 1, 0), max(int(np.floor(box.centre_y - half)) - 1, 0)
    x1, y1 = min(int(np.ceil(box.centre_x + half)) + 2, width), min(int(np.ceil(box.centre_y + half)) + 2, height)
    frame = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return frame
    local = face.CropBox(box.centre_x - x0, box.centre_y - y0, box.side)
    frame[y0:y1, x0:x1] = local.paste(photo[y0:y1, x0:x1], crop, feather)
    return frame


def amplify_lips(registered: np.ndarray, reference: np.ndarray, gain: float) -> np.ndarray:
    """Registered landmarks ``[T, 68, 3]`` whose lip points (48-67) move ``gain`` times as far (x, y) from the
    reference's ``[68, 3]`` as predicted, as MakeItTalk amplifies its lips; an upper and lower inner-lip point that
    would then cross (y grows downwards) meet at their midpoint instead."""
    amplified = registered.copy()
    amplified[:, LIPS, :2] = reference[LIPS, :2] + gain * (registered[:, LIPS, :2] - reference[LIPS, :2])
    upper, lower = amplified[:, face.UPPER_INNER_LIP, 1], amplified[:, face.LOWER_INNER_LIP, 1]
    middle, crossed = (upper + lower) / 2, lower < upper
    amplified[:, face.UPPER_INNER_LIP, 1] = np.where(crossed, middle, upper)
    amplified[:, face.LOWER_INNER_LIP, 1] = np.where(crossed, middle, lower)
    return amplified


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def write_video(
    reference: Reference,
    speech: Speech,
    models: Models,
    out: Path,
    mode: str = "max",
    seed: int = 0,
    chunk: int = CHUNK_FRAMES,
    overlap: int = OVERLAP_FRAMES,
    feather: float = 0.1,
    lip_gain: float = LIP_GAIN,
    on_frames: Callable[[int], None] = lambda count: None,
) -> Path:
    """Renders one video of ``reference`` saying ``speech`` into ``out`` (module docstring), chunk by chunk."""
    registered = torch.from_numpy(reference.registered)

    def predict(windows: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        result = models.mdn.generate(
            torch.from_numpy(windows), registered, mode=mode, samples=1, seed=seed + index * CHUNK_SEED_STRIDE
        )
        lips = amplify_lips(_as_numpy(result["registered"])[0], reference.registered, lip_gain)
        return lips, _as_numpy(result["pose"])[0]

    crop = torch.from_numpy(reference.crop).permute(2, 0, 1).float().div(255.0)[None]  # [1, 3, 256, 256]
    crop_landmarks = torch.from_numpy(reference.crop_landmarks)[None]  # [1, 68, 3]
    height, width = reference.photo.shape[:2]
    with VideoStreamWriter(out, width, height, audio=speech.wav) as writer, torch.inference_mode():
        for part in landmark_chunks(speech, predict, chunk, overlap):
            targets = torch.from_numpy(part.image_landmarks(reference.pose, reference.depth))  # [n, 68, 3]
            for start in range(0, len(targets), RENDER_BATCH):
                batch = targets[start : start + RENDER_BATCH]
                count = len(batch)
                rendered = models.renderer.render(
                    crop.expand(count, -1, -1, -1), crop_landmarks.expand(count, -1, -1), batch
                )  # [n, 3, 256, 256] in [0, 1]
                faces = (rendered.clamp(0, 1) * 255.0 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
                for rendered_face in faces:
                    writer.write(paste_region(reference, rendered_face, feather))
                on_frames(count)
    return out


def output_paths(out: Path, samples: int, seed: int) -> list[Path]:
    """``out`` for one video; ``<out>-seed<S+k><suffix>`` for each of K samples."""
    if samples == 1:
        return [out]
    return [out.with_name(f"{out.stem}-seed{seed + k}{out.suffix}") for k in range(samples)]


def generate(
    image: str | Path,
    audio: str | Path,
    out: str | Path,
    mode: str = "max",
    samples: int = 1,
    seed: int = 0,
    mdn: str | Path = "runs/mdn/latest",
    renderer: str | Path = "runs/renderer/latest",
    chunk: int = CHUNK_FRAMES,
    feather: float = 0.1,
    lip_gain: float = LIP_GAIN,
    progress: bool = True,
    report: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> list[Path]:
    """Writes the talking-head video(s) of the face in ``image`` saying ``audio``; returns their paths.

    Raises a ValueError subclass with one sentence on bad input (GenerationError, PhotoError, face.NoFaceError,
    MediaError, CheckpointError), before any output file exists.
    """
    out = Path(out)
    if mode not in MODES:
        raise GenerationError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    if samples < 1 or (samples > 1 and mode != "sample"):
        raise GenerationError(f"--samples {samples} needs --mode sample and a count of at least 1.")
    if out.suffix.lower() != ".mp4":
        raise GenerationError(f"The output {out} must be an .mp4 file.")
    if chunk < 1:
        raise GenerationError(f"The chunk length must be at least one frame, got {chunk}.")
    if not 0 <= lip_gain <= 5:
        raise GenerationError(f"The lip gain must be between 0 (lips held still) and 5, got {lip_gain}.")
    checkpoints = resolve_checkpoint(mdn, "mdn"), resolve_checkpoint(renderer, "renderer")
    paths = output_paths(out, samples, seed)
    with tempfile.TemporaryDirectory(prefix="macl-generate-") as scratch:
        speech = decode_speech(audio, Path(scratch) / "speech.wav")
        reference = load_reference(image)
        for message in reference.notes + [f"warning: {text}" for text in reference.warnings]:
            report(message)
        models = Models.load(*checkpoints)
        done: list[Path] = []
        with tqdm(total=speech.frames * samples, unit="frame", desc="generate", disable=not progress) as bar:
            try:
                for k, path in enumerate(paths):
                    done.append(write_video(reference, speech, models, path, mode, seed + k, chunk,
                                            min(OVERLAP_FRAMES, chunk), feather, lip_gain, bar.update))  # fmt: skip
            except BaseException:
                for path in done:
                    path.unlink(missing_ok=True)
                raise
    return paths


def main(argv: list[str] | None = None) -> int:
    """``make generate``: arguments in, video(s) out; bad input ends with one sentence and exit status 1."""
    parser = argparse.ArgumentParser(prog="python -m experiments.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True, help="the face photo (any format PIL reads)")
    parser.add_argument("--audio", required=True, help="the speech (any format ffmpeg reads)")
    parser.add_argument("--out", required=True, help="the output video (.mp4)")
    parser.add_argument("--mode", default="max", choices=MODES, help="MDN inference: top component, mean, samples")
    parser.add_argument("--samples", type=int, default=1, help="K videos with seeds S..S+K-1 (--mode sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    parser.add_argument("--mdn", default="runs/mdn/latest", help="MDN checkpoint or run folder")
    parser.add_argument("--renderer", default="runs/renderer/latest", help="renderer checkpoint or run folder")
    parser.add_argument("--chunk", type=int, default=CHUNK_FRAMES, help="frames generated at a time (memory bound)")
    parser.add_argument("--feather", type=float, default=0.1, help="paste-back edge, as a share of the crop side")
    parser.add_argument("--lip-gain", type=float, default=LIP_GAIN, help="lip motion x this (1: as predicted)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        paths = generate(args.image, args.audio, args.out, args.mode, args.samples, args.seed, args.mdn,
                         args.renderer, args.chunk, args.feather, args.lip_gain,
                         progress=not args.no_progress)  # fmt: skip
    except (GenerationError, PhotoError, face.NoFaceError, MediaError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
