"""Builds the embedded default corpus (clips in the real LRS3 or VoxCeleb2 layout) and its command line,
``python -m datamodules.synthetic``.

A corpus is built in a hidden sibling folder and renamed into place with ``corpus.json`` (the generator's
arguments) inside, so a folder named like the corpus is always complete: see :func:`read_marker`.
"""

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from datamodules.arguments import OneSentenceParser
from datamodules.corpus import CorpusError
from datamodules.synthetic.clips import ClipJob, write_clip
from datamodules.synthetic.faces import PHOTOS, photo_landmarks, share_landmarks
from datamodules.synthetic.speakers import HELD_OUT_PERSON, HELD_OUT_VOICE, clip_path, speaker_specs

MARKER = "corpus.json"
GENERATOR = "datamodules.synthetic"
GENERATOR_VERSION = 5
DEFAULT_OUT = Path("data/corpus/synthetic")  # the embedded corpus, relative to the repository root
LAYOUTS = ("lrs3", "voxceleb2")


def _write_clip_in(arguments: tuple[ClipJob, Path]) -> str:
    return write_clip(*arguments)


def read_marker(folder: str | Path) -> dict | None:
    """The ``corpus.json`` of a complete generated corpus, or None when ``folder`` is not one."""
    marker = Path(folder) / MARKER
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("generator") == GENERATOR else None


def _validate(layout: str, speakers: int, clips: int, seconds: float, seed: int, size: int, workers: int) -> None:
    if layout not in LAYOUTS:
        raise CorpusError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    if speakers < 1:
        raise CorpusError(f"A corpus needs at least 1 speaker, got {speakers}.")
    if clips < 1:
        raise CorpusError(f"A corpus needs at least 1 clip per speaker, got {clips}.")
    if not 1.0 <= seconds <= 600.0:
        raise CorpusError(f"Clips must last between 1 and 600 seconds, got {seconds}.")
    if seed < 0:
        raise CorpusError(f"The seed must be a non-negative integer, got {seed}.")
    if size % 2 or not 64 <= size <= 1024:
        raise CorpusError(f"The frame size must be an even number of pixels from 64 to 1024, got {size}.")
    if workers < 1:
        raise CorpusError(f"At least 1 worker is needed, got {workers}.")


def _check_writable(out: Path) -> None:
    """Raises CorpusError naming the reason when ``out`` cannot be created as a folder."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"Cannot write the corpus to {out}: it exists and is a file, not a folder.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CorpusError(f"Cannot write the corpus to {out}: {ancestor} is a file, not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CorpusError(f"Cannot write the corpus to {out}: {ancestor} is not writable.")


def _remove_stale_staging(out: Path) -> None:
    """Removes hidden half-built siblings of ``out`` left by generator runs that were killed."""
    for staging in out.parent.glob(f".{out.name}.partial-*"):
        pid = staging.name.removeprefix(f".{out.name}.partial-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def generate_corpus(
    out: str | Path,
    layout: str = "lrs3",
    speakers: int = 8,
    clips: int = 6,
    seconds: float = 4.0,
    seed: int = 0,
    size: int = 256,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    parted: float = 0.0,
) -> Path:
    """Writes a synthetic corpus to ``out`` and returns its path; does nothing if it is already there.

    The clips are built in a hidden sibling folder, ``corpus.json`` is written last, and the folder is
    renamed to ``out``: an interrupted run never leaves anything under ``out``. An ``out`` that holds a
    corpus made with other arguments is replaced only when ``force`` is set; any other non-empty folder is
    never touched. Every clip depends only on (seed, speaker, clip), so ``workers`` changes nothing but time.
    A share ``parted`` of the speakers rests with parted, smiling lips (the default corpus: none).
    """
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if multiprocessing.current_process().daemon:  # a pool worker cannot start its own pool
        workers = 1
    _validate(layout, speakers, clips, seconds, seed, size, workers)
    out = Path(out).absolute()
    arguments = {"layout": layout, "speakers": speakers, "clips": clips, "seconds": float(seconds)}
    arguments |= {"seed": seed, "size": size, "version": GENERATOR_VERSION}
    if parted:  # only when asked, so that corpora made before the option keep matching their arguments
        arguments["parted"] = float(parted)
    say = (lambda message: print(message, file=sys.stderr)) if progress else (lambda message: None)
    _check_writable(out)
    existing = read_marker(out)
    if existing is not None and existing["arguments"] == arguments:
        say(f"{out} is already a complete corpus with these arguments; nothing to do.")
        return out
    made_by = (existing or {}).get("arguments", {}).get("version")
    outdated = isinstance(made_by, int) and made_by < GENERATOR_VERSION
    if outdated:  # an older generator's corpus is stale data, never someone's: it is rebuilt with the same name
        say(f"{out} was made by an older version of the generator; rebuilding it.")
    if existing is not None and not force and not outdated:
        made = existing["arguments"]
        differences = ", ".join(
            f"{key} {made.get(key)} (asked {value})" for key, value in arguments.items() if made.get(key) != value
        )
        raise CorpusError(
            f"{out} holds a corpus made with other arguments: {differences}; "
            "pass --force (make corpus FORCE=1) to replace it, or choose another folder."
        )
    if existing is None and out.is_dir() and any(out.iterdir()):
        raise CorpusError(f"{out} exists and is not a generated corpus (no {MARKER}); choose another folder.")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        started = time.monotonic()
        specs = speaker_specs(seed, speakers, layout, parted)
        jobs = [
            ClipJob(spec, clip, clip_path(spec, clip, seed, layout), seed, float(seconds), size, layout)
            for spec in specs
            for clip in range(clips)
        ]
        bar = tqdm(total=len(jobs), unit="clip", desc="corpus", disable=not progress)
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                write_clip(job, staging)
                bar.update()
        else:
            landmarks = {name: photo_landmarks(name) for name in PHOTOS}
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=share_landmarks, initargs=(landmarks,)) as pool:
                for _ in pool.imap_unordered(_write_clip_in, [(job, staging) for job in jobs]):
                    bar.update()
        bar.close()
        splits = {
            split: [spec.speaker_id for spec in specs if spec.split == split]
            for split in dict.fromkeys(spec.split for spec in specs)
        }
        marker = {
            "generator": GENERATOR,
            "arguments": arguments,
            "clips": sorted(job.relative_path for job in jobs),
            "splits": splits,
            "speakers": {
                spec.speaker_id: {"split": spec.split, "photo": spec.photo, "voice": spec.voice.name} for spec in specs
            },
            "held_out": {
                "person": HELD_OUT_PERSON if any(spec.photo == HELD_OUT_PERSON for spec in specs) else None,
                "voice": f"espeak:{HELD_OUT_VOICE}" if any(s.voice.variant == HELD_OUT_VOICE for s in specs) else None,
            },
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        if (read_marker(out) or {}).get("arguments") != arguments:  # else another run just made the same
            _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(
        f"Wrote {len(jobs)} clips ({layout}, {speakers} speakers, {seconds:g} s) to {out} "
        f"in {time.monotonic() - started:.1f} s."
    )
    return out


def ensure_default_corpus(out: str | Path = DEFAULT_OUT) -> Path:
    """The embedded corpus (the defaults of ``make corpus``), generated first if it is not complete."""
    return generate_corpus(out)


def _move_into_place(staging: Path, out: Path) -> None:
    """Renames the finished ``staging`` folder to ``out``, replacing an empty folder or an older corpus."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
        return
    replaced = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    out.rename(replaced)
    staging.rename(out)
    shutil.rmtree(replaced, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = OneSentenceParser(
        prog="python -m datamodules.synthetic",
        description="Generate the embedded synthetic talking-face corpus in the LRS3 or VoxCeleb2 layout.",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="corpus folder (default: %(default)s)")
    parser.add_argument("--layout", default="lrs3", choices=LAYOUTS, help="folder layout (default: %(default)s)")
    parser.add_argument("--speakers", type=int, default=8, help="pseudo-speakers (default: %(default)s)")
    parser.add_argument("--clips", type=int, default=6, help="clips per speaker (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: min(2, CPUs))")
    parser.add_argument(
        "--parted",
        type=float,
        default=0.0,
        help="share of speakers whose rest mouth is parted and smiling (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="replace a corpus made with other arguments")
    args = parser.parse_args(argv)
    if not 0 <= args.parted <= 1:
        parser.error(f"--parted must be a share between 0 and 1, got {args.parted}")
    try:
        generate_corpus(
            args.out,
            args.layout,
            args.speakers,
            args.clips,
            args.seconds,
            args.seed,
            args.size,
            args.workers,
            force=args.force,
            parted=args.parted,
        )
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: writing the corpus to {args.out} failed ({error}); nothing was left behind.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"Interrupted; nothing was left under {args.out}.", file=sys.stderr)
        return 130
    return 0
