"""``make generate``: a talking-head video from one photo and one speech recording.

    python -m experiments.generate --image photo.jpg --audio speech.m4a --out video.mp4 [--mode max|mean|sample]
        [--samples K] [--seed S] [--lip-gain G] [--mdn runs/mdn/latest] [--renderer runs/renderer/latest]

The chain: the photo's face (:mod:`datamodules.photo`) gives the reference crop, landmarks and pose; the
speech, decoded to 16 kHz mono, is cut into chunks (:mod:`experiments.streaming`); per chunk the SFE + MDN
give registered landmarks and pose relative to the photo's, the lips moved ``--lip-gain`` times as far from
the photo's (``amplify_lips``), made absolute and put back in the crop (``face.absolute_pose``,
``face.unregister``), the eyes blinking on a seeded schedule (:mod:`experiments.generation.blinks`;
``--no-blinks`` to keep them open); the renderer computes each frame's motion at its 256x256 working size, which
moves the photo's own pixels at the photo's resolution (``--resolution photo``, the default:
:mod:`experiments.generation.compositing`; ``--resolution crop`` pastes the 256x256 render back instead, as
before), one frame per worker thread, a worker per core (:mod:`experiments.generation.workers`), and the frames
stream in order to an H.264 + AAC file at 25 fps (:class:`datamodules.media.VideoStreamWriter`).
Memory stays bounded whatever the recording's length.

``--samples K`` (with ``--mode sample``) writes K videos, ``<out>-seed<S+k>.mp4`` for k = 0 .. K-1, each the
video that ``--samples 1 --seed S+k`` writes. Bad input ends with one sentence and exit status 1, and leaves
no output file; the output location is checked before any work. Ctrl-C and SIGTERM remove the partial video and
the scratch audio and end with one sentence (exit status 130 and 143). docs/bad-input.md lists every refusal.
"""

import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules import face
from datamodules.arguments import OneSentenceParser
from datamodules.media import MediaError, Speech, VideoStreamWriter, decode_speech
from datamodules.photo import PhotoError, Reference, load_reference
from experiments.generation.blinks import blink_closure, close_eyes
from experiments.generation.compositing import PhotoCompositor
from experiments.generation.workers import default_workers, one_thread_per_worker, ordered_map
from experiments.streaming import CHUNK_FRAMES, OVERLAP_FRAMES, landmark_chunks
from experiments.weights import DEMO_RUN, shipped_checkpoint
from lightning_modules import checkpoints
from lightning_modules.checkpoints import CheckpointError

MODES = ("max", "mean", "sample")
RESOLUTIONS = ("photo", "crop")  # the face moved at the photo's resolution, or rendered at 256 and pasted back
STAGES = {  # stage -> (its name in messages, the command that trains it, the flag that picks a checkpoint)
    "mdn": ("landmark MDN", "make train-mdn", "MDN=<checkpoint> (--mdn)"),
    "renderer": ("face renderer", "make train-renderer", "RENDERER=<checkpoint> (--renderer)"),
}
DEFAULT_RUNS = {"mdn": "runs/mdn/latest", "renderer": "runs/renderer/latest"}  # what --mdn and --renderer default to
CHUNK_SEED_STRIDE = 1_000_003  # the seed of chunk c of sample k is seed + k + c * stride
MAX_SEED = 2**32 - 1  # seed + k + c * stride stays within a torch generator's 64-bit seed for any recording
MAX_SAMPLES = 100  # videos of one call: each is a whole generation
MAX_FEATHER = 0.5  # the paste-back edge ramps in from both sides of the crop: half of it reaches the centre
RENDER_BATCH = 8  # frames rendered at once by one worker alone
WORKER_BATCH = 1  # ... and by each of several workers (one frame each keeps every worker's tensors in its cache)
# The MDN under-predicts how far the mouth moves: on the embedded corpus's held-out speakers its opening spread as
# widely as the truth's with the lips moved 1.5 times as far (docs/generation.md).
LIP_GAIN = 1.5
LIPS = slice(48, 68)


class GenerationError(ValueError):
    """Bad arguments for generation; the message is one sentence."""


# What bad input raises (one sentence each), as opposed to a fault of the program: the command line and the web
# page (experiments.app) answer these with their message.
INPUT_ERRORS = (GenerationError, PhotoError, face.NoFaceError, MediaError, CheckpointError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C's KeyboardInterrupt is so that the same clean-up runs."""


def resolve_checkpoint(path: str | Path, stage: str) -> Path:
    """The checkpoint file that ``path`` names for ``stage`` (:func:`lightning_modules.checkpoints.resolve_checkpoint`:
    the file itself, or a run folder's best checkpoint, else its ``checkpoints/last.ckpt``); the default
    ``runs/<stage>/latest``, when it names no run or ``make demo``'s smoke run, is the repository's shipped
    ``weights/<stage>.ckpt`` (the demo's recipe trained longer)."""
    name, command, flag = STAGES[stage]
    own_run = Path(path).exists() and Path(path).resolve().name != DEMO_RUN
    if Path(path) == Path(DEFAULT_RUNS[stage]) and not own_run and shipped_checkpoint(stage).is_file():
        return shipped_checkpoint(stage)
    return checkpoints.resolve_checkpoint(path, f"{name} checkpoint", f"train one with `{command}` or pass {flag}")


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
            load_face_renderer(resolve_checkpoint(renderer, "renderer"), onnx_runtime=True),
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


def reference_tensors(reference: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """The renderer's inputs of the reference: its crop ``[1, 3, 256, 256]`` in [0, 1] and landmarks ``[1, 68, 3]``."""
    crop = torch.from_numpy(reference.crop).permute(2, 0, 1).float().div(255.0)[None]
    return crop, torch.from_numpy(reference.crop_landmarks)[None]


def render_batch(workers: int) -> int:
    """Frames each render call takes when ``workers`` workers render (``RENDER_BATCH`` alone, ``WORKER_BATCH`` each of
    several)."""
    return RENDER_BATCH if workers == 1 else WORKER_BATCH


def render_frames(
    renderer: torch.nn.Module,
    reference: Reference,
    targets: torch.Tensor,
    compositor: PhotoCompositor | None = None,
    feather: float = 0.1,
) -> list[np.ndarray]:
    """The photo-sized frames ``[H, W, 3]`` uint8 of ``reference`` with its face at ``targets`` ``[n, 68, 3]``
    (256-crop pixels): moved at the photo's resolution by ``compositor``, or without one the 256x256 render
    pasted back with a feathered edge (``paste_region``)."""
    crop, crop_landmarks = reference_tensors(reference)
    count = len(targets)
    inputs = crop.expand(count, -1, -1, -1), crop_landmarks.expand(count, -1, -1), targets
    if compositor is None:
        rendered = renderer.render(*inputs)  # [n, 3, 256, 256] in [0, 1]
        faces = (rendered.clamp(0, 1) * 255.0 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        return [paste_region(reference, rendered_face, feather) for rendered_face in faces]
    return [compositor.frame(*layers) for layers in compositor.frame_layers(renderer.motion(*inputs))]


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
    resolution: str = "photo",
    blinks: bool = True,
    workers: int | None = None,
) -> Path:
    """Renders one video of ``reference`` saying ``speech`` into ``out`` (module docstring), chunk by chunk, its
    frames rendered by ``workers`` threads (one per core by default: :mod:`experiments.generation.workers`)."""
    registered = torch.from_numpy(reference.registered)

    def predict(windows: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        result = models.mdn.generate(
            torch.from_numpy(windows), registered, mode=mode, samples=1, seed=seed + index * CHUNK_SEED_STRIDE
        )
        lips = amplify_lips(_as_numpy(result["registered"])[0], reference.registered, lip_gain)
        return lips, _as_numpy(result["pose"])[0]

    compositor = None
    if resolution == "photo":
        compositor = PhotoCompositor(reference.photo, reference.box, face.FACE_CROP_SIZE, feather)
    closure = blink_closure(speech.frames, seed) if blinks else np.zeros(speech.frames, np.float32)
    workers = workers or default_workers()
    batch = render_batch(workers)

    def target_batches() -> Iterator[torch.Tensor]:
        for part in landmark_chunks(speech, predict, chunk, overlap):
            landmarks = part.image_landmarks(reference.pose, reference.depth)  # [n, 68, 3]
            targets = torch.from_numpy(close_eyes(landmarks, closure[part.start : part.stop]))
            yield from targets.split(batch)

    def render(targets: torch.Tensor) -> list[np.ndarray]:
        with torch.inference_mode():  # per thread
            return render_frames(models.renderer, reference, targets, compositor, feather)

    height, width = reference.photo.shape[:2]
    with VideoStreamWriter(out, width, height, audio=speech.wav) as writer, one_thread_per_worker(workers):
        with torch.inference_mode():
            for frames in ordered_map(render, target_batches(), workers):
                for frame in frames:
                    writer.write(frame)
                on_frames(len(frames))
    return out


def output_paths(out: Path, samples: int, seed: int) -> list[Path]:
    """``out`` for one video; ``<out>-seed<S+k><suffix>`` for each of K samples."""
    if samples == 1:
        return [out]
    return [out.with_name(f"{out.stem}-seed{seed + k}{out.suffix}") for k in range(samples)]


def prepare_output(paths: list[Path], inputs: tuple[Path, ...]) -> list[Path]:
    """Checks, before any work, that the videos ``paths`` can be written: none is a folder or one of the
    ``inputs``, and their folder exists (made here when missing) and takes a new file. Returns the folders it
    made, outermost first, for :func:`remove_folders` to take back on failure; raises GenerationError."""
    for path in paths:
        if path.is_dir():
            raise GenerationError(f"The output {path} is a folder; give a file name, such as {path / 'video.mp4'}.")
        for source in inputs:
            if path.resolve() == source.resolve():
                raise GenerationError(f"The output {path} is the input {source}; write the video to another file.")
    folder = paths[0].parent
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir():
        raise GenerationError(f"The output {paths[0]} cannot be written: {existing} is a file, not a folder.")
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        remove_folders(missing)
        reason = error.strerror or type(error).__name__
        message = f"The output {paths[0]} cannot be written: {folder} takes no new file ({reason})."
        raise GenerationError(message) from error
    return missing


def remove_folders(folders: list[Path]) -> None:
    """Removes the ``folders`` (outermost first) that :func:`prepare_output` made, innermost first, if empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


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
    resolution: str = "photo",
    blinks: bool = True,
    progress: bool = True,
    report: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    models: Models | None = None,
) -> list[Path]:
    """Writes the talking-head video(s) of the face in ``image`` saying ``audio``; returns their paths.

    ``models``, already loaded (the web page loads them once), stand for ``mdn`` and ``renderer``. The photo's
    notes (several faces, a small face) go to ``report``. Raises one of INPUT_ERRORS with one sentence on bad
    input, before any output file exists.


    Raises a ValueError subclass with one sentence on bad input (GenerationError, PhotoError, face.NoFaceError,
    MediaError, CheckpointError), before any output file exists; on failure or interruption it leaves no file and
    no folder that it made.
    """
    out = Path(out)
    if mode not in MODES:
        raise GenerationError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    if resolution not in RESOLUTIONS:
        raise GenerationError(f"Unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}.")
    if samples < 1 or (samples > 1 and mode != "sample"):
        raise GenerationError(f"--samples {samples} needs --mode sample and a count of at least 1.")
    if samples > MAX_SAMPLES:
        raise GenerationError(f"--samples {samples} is more videos than one call writes; give at most {MAX_SAMPLES}.")
    if out.suffix.lower() != ".mp4":
        raise GenerationError(f"The output {out} must be an .mp4 file.")
    if chunk < 1:
        raise GenerationError(f"The chunk length must be at least one frame, got {chunk}.")
    if not 0 <= lip_gain <= 5:
        raise GenerationError(f"The lip gain must be between 0 (lips held still) and 5, got {lip_gain}.")
    if not 0 <= feather <= MAX_FEATHER:
        raise GenerationError(
            f"The feather must be between 0 (a hard edge) and {MAX_FEATHER:g} (a blend reaching the crop's centre), "
            f"got {feather}."
        )
    if not 0 <= seed <= MAX_SEED - samples + 1:
        raise GenerationError(f"The seed must be between 0 and {MAX_SEED - samples + 1}, got {seed}.")
    checkpoints = None if models else (resolve_checkpoint(mdn, "mdn"), resolve_checkpoint(renderer, "renderer"))
    paths = output_paths(out, samples, seed)
    replaced = [path for path in paths if path.exists()]
    made = prepare_output(paths, (Path(image), Path(audio)))
    done: list[Path] = []
    try:
        with tempfile.TemporaryDirectory(prefix="macl-generate-") as scratch:
            speech = decode_speech(audio, Path(scratch) / "speech.wav")
            reference = load_reference(image)
            for message in reference.notes + [f"warning: {text}" for text in reference.warnings]:
                report(message)
            if checkpoints and any(path.parent == shipped_checkpoint("mdn").parent for path in checkpoints):
                report(
                    "note: the models in weights/ speak: runs/ holds no run of your own (make demo's smoke runs "
                    "speak in its own video; MDN= and RENDERER= take any run)."
                )
            models = models or Models.load(*checkpoints)
            with tqdm(total=speech.frames * samples, unit="frame", desc="generate", disable=not progress) as bar:
                for k, path in enumerate(paths):
                    done.append(write_video(reference, speech, models, path, mode, seed + k, chunk,
                                            min(OVERLAP_FRAMES, chunk), feather, lip_gain, bar.update, resolution,
                                            blinks))  # fmt: skip
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        remove_folders(made)
        raise
    if made:
        report(f"Made the folder {made[-1]} for the output.")
    if replaced:
        report(f"Replaced the earlier {', '.join(map(str, replaced))}.")
    return paths


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """``make generate``: arguments in, video(s) out; bad input ends with one sentence and exit status 1."""
    parser = OneSentenceParser(prog="python -m experiments.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True, help="the face photo (any format PIL reads)")
    parser.add_argument("--audio", required=True, help="the speech (any format ffmpeg reads)")
    parser.add_argument("--out", required=True, help="the output video (.mp4)")
    parser.add_argument("--mode", default="max", choices=MODES, help="MDN inference: top component, mean, samples")
    parser.add_argument("--samples", type=int, default=1, help="K videos with seeds S..S+K-1 (--mode sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    parser.add_argument("--mdn", default=DEFAULT_RUNS["mdn"], help="MDN checkpoint or run folder")
    parser.add_argument("--renderer", default=DEFAULT_RUNS["renderer"], help="renderer checkpoint or run folder")
    parser.add_argument("--chunk", type=int, default=CHUNK_FRAMES, help="frames generated at a time (memory bound)")
    parser.add_argument("--feather", type=float, default=0.1, help="paste-back edge, as a share of the crop side")
    parser.add_argument("--lip-gain", type=float, default=LIP_GAIN, help="lip motion x this (1: as predicted)")
    parser.add_argument(
        "--resolution",
        default="photo",
        choices=RESOLUTIONS,
        help="photo: the face moved at the photo's resolution; crop: rendered at 256, pasted back",
    )
    parser.add_argument("--no-blinks", action="store_true", help="eyes kept open (no seeded blinks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        paths = generate(args.image, args.audio, args.out, args.mode, args.samples, args.seed, args.mdn,
                         args.renderer, args.chunk, args.feather, args.lip_gain, args.resolution,
                         not args.no_blinks, progress=not args.no_progress)  # fmt: skip
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interruption:
        how, code = ("SIGTERM", 128 + signal.SIGTERM) if isinstance(interruption, Terminated) else ("Ctrl-C", 130)
        print(f"error: generation stopped by {how}; no video was written and the partial files are removed.",
              file=sys.stderr)  # fmt: skip
        return code
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
