"""``make evaluate-real``: lip sync as a person sees it, on real recordings and photos and on held-out TTS speakers.

    python -m experiments.evaluate_real --name dev [--split dev|held-out] [--mdn runs/mdn/latest]
        [--renderer runs/renderer/latest] [--corpus data/corpus/synthetic] [--corpus-clips all|N] [--no-recordings]

Generates (with :func:`experiments.generate.generate`) a video of every photo of the real-speech set's part
(:mod:`experiments.evaluation.real_data`) saying every recording of it, and of the first frame of held-out TTS
clips of the embedded corpus saying their own audio (speakers no stage trained on: its val split with ``dev``, its
test split with ``held-out``); measures each with
:mod:`experiments.evaluation.closure` (closure ratio, r(mouth, energy), face share) against the recording's phones
(pocketsphinx) or the clip's sidecar, beside two baselines, the photo repeated (a static face) and the video's
mouth shuffled in time against the speech (blocks of 200 ms: the chance level of the same motion), and, for corpus
clips, the true video. Writes
``results/real_speech/<name>.json`` and ``.md``; the videos stay in ``outputs/real_speech/<name>/``.
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from datamodules.corpus import discover
from datamodules.face import NoFaceError
from datamodules.media import SAMPLE_RATE, MediaError, read_audio, read_clip, read_video
from datamodules.photo import PhotoError, load_reference
from experiments.evaluation.closure import (
    face_region,
    measure_frames,
    mouth_track,
    pooled_closure_ratio,
    shuffled_in_time,
    speech_measures,
)
from experiments.evaluation.columns import commit
from experiments.evaluation.phones import AlignmentError, align_phones, clip_phones
from experiments.evaluation.real_data import MissingDataError, items, locate
from experiments.generate import GenerationError, generate
from lightning_modules.checkpoints import CheckpointError

MEASURES = ("closure_ratio", "mouth_energy_r", "face_share")  # per video; a group's is the mean over its videos
GROUP_MEASURES = ("closure_pooled", *MEASURES)  # closure_pooled: the group's frames taken together
COLUMN_NAMES = {"closure_pooled": "closure, pooled", "closure_ratio": "closure", "mouth_energy_r": "r",
                "face_share": "face"}  # fmt: skip
VARIANTS = ("model", "static", "shuffled", "truth")


def evaluate_pair(
    image: Path, audio: np.ndarray, phones: list, out: Path, models: dict, scratch: Path, truth: Path | None = None
) -> dict:
    """The measures of one photo saying one recording (the video written to ``out``), of the photo repeated, of the
    video's mouth shuffled in time against the speech, and (for a corpus clip) of the true video; each measured
    around the face that generation animated (the largest of a group photo)."""
    speech = scratch / "speech.wav"
    soundfile.write(speech, audio, SAMPLE_RATE, subtype="PCM_16")
    generate(image, speech, out, progress=False, report=lambda message: None, **models)
    reference = load_reference(image)
    opening = mouth_track(face_region(read_video(out), reference.box))
    row = {
        "model": speech_measures(opening, audio, phones),
        "shuffled": speech_measures(shuffled_in_time(opening), audio, phones),
    }
    still = face_region(reference.photo[None], reference.box)
    row["static"] = measure_frames(np.broadcast_to(still, (len(opening), *still.shape[1:])), audio, phones)
    if truth is not None:
        row["truth"] = measure_frames(face_region(read_clip(truth)[0], reference.box), audio, phones)
    return row


def real_rows(split: str, models: dict, videos: Path, scratch: Path) -> Iterator[dict]:
    """One row per photo x recording of ``split`` of the real-speech set, as each is measured."""
    recordings = [(item, locate(item)) for item in items("speech", split)]
    photos = [(item, locate(item)) for item in items("photo", split)]
    for recording, path in recordings:
        audio = read_audio(path)
        stop = len(audio) if recording.end is None else int(recording.end * SAMPLE_RATE)
        audio = audio[int(recording.start * SAMPLE_RATE) : stop]
        phones = align_phones(audio, recording.transcript, name=str(path))
        aligner = "forced to its transcript" if recording.transcript else "phone recognition"
        for photo, image in photos:
            print(f"Generating {photo.name} saying {recording.name}", flush=True)
            row = evaluate_pair(image, audio, phones, videos / f"{photo.name}--{recording.name}.mp4", models, scratch)
            yield {"video": f"{photo.name}--{recording.name}", "photo": photo.name, "recording": recording.name,
                   "kind": "real", "phones": aligner, **row}  # fmt: skip


CORPUS_SPLITS = {"dev": "val", "held-out": "test"}  # TTS speakers no stage trained on: val to tune on, test to judge


def held_out_clips(corpus: Path, split: str, clips: int | None = None) -> list[Path]:
    """The first ``clips`` (None: all) clips of the corpus's split that ``split`` names (val for ``dev``, test for
    ``held-out``), speakers taken in turn, so that a few clips still hear every speaker."""
    by_speaker: dict[str, list[Path]] = {}
    for clip in discover(corpus, "lrs3"):
        if clip.split == CORPUS_SPLITS[split]:
            by_speaker.setdefault(clip.speaker, []).append(clip.path)
    in_turn = [clip for group in zip_longest(*by_speaker.values()) for clip in group if clip is not None]
    return in_turn[:clips]


def corpus_rows(
    corpus: Path, split: str, clips: int | None, models: dict, videos: Path, scratch: Path
) -> Iterator[dict]:
    """One row per TTS clip of speakers no stage trained on (:func:`held_out_clips`): its first frame saying its own
    audio, against its sidecar's phones and its true video."""
    for clip in held_out_clips(corpus, split, clips):
        phones, _ = clip_phones(clip.with_suffix(""))
        frames, audio = read_clip(clip)
        image = scratch / "reference.png"
        Image.fromarray(frames[0]).save(image)
        name = f"{clip.parent.name}-{clip.stem}"
        print(f"Generating corpus clip {name}", flush=True)
        row = evaluate_pair(image, audio, phones, videos / f"{name}.mp4", models, scratch, truth=clip)
        yield {"video": name, "photo": "first frame", "recording": name, "kind": "corpus", "phones": "sidecar", **row}


def means(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean of each measure per variant over ``rows`` (NaNs left out; a variant no row has is left out), and the
    closure ratio of their frames pooled (``closure_pooled``)."""
    result = {}
    for variant in VARIANTS:
        present = [row[variant] for row in rows if variant in row]
        if present:
            values = {name: np.array([entry[name] for entry in present], np.float64) for name in MEASURES}
            result[variant] = {"closure_pooled": pooled_closure_ratio(present)} | {
                name: float(np.nanmean(column)) if np.isfinite(column).any() else float("nan")
                for name, column in values.items()
            }
    return result


def _cell(values: dict | None, name: str) -> str:
    value = None if values is None else values.get(name)
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _table(title: str, rows: list[tuple[str, dict]], measures: tuple[str, ...] = MEASURES) -> list[str]:
    """Markdown rows: per label, each of ``measures`` as model / static / shuffled / truth."""
    columns = (f"{COLUMN_NAMES[name]} (model / static / shuffled / truth)" for name in measures)
    lines = ["| " + title + " | " + " | ".join(columns) + " |", "|---" * (len(measures) + 1) + "|"]
    for label, row in rows:
        cells = [" / ".join(_cell(row.get(variant), name) for variant in VARIANTS) for name in measures]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_report(name: str, out: Path, header: dict, rows: list[dict]) -> Path:
    """Writes ``<out>/<name>.json`` (header, means per kind and per photo, rows) and ``<out>/<name>.md``."""
    out.mkdir(parents=True, exist_ok=True)
    kinds = {kind: means([row for row in rows if row["kind"] == kind]) for kind in ("real", "corpus")}
    photos = {photo: means([row for row in rows if row["photo"] == photo])
              for photo in dict.fromkeys(row["photo"] for row in rows if row["kind"] == "real")}  # fmt: skip
    record = {**header, "means": kinds, "per_photo": photos, "rows": rows}
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=float, ensure_ascii=False) + "\n")
    lines = [f"# Real-speech evaluation {name}", "", ", ".join(f"{key}: {value}" for key, value in header.items())]
    lines += [
        "",
        "closure: inner-lip gap at p b m f v over that at open vowels (0: the lips close; 1: they do not move), per",
        "video, and for a group the mean over its videos; closure, pooled: the same of the group's frames taken",
        "together, so that a clip with one or two open-vowel frames does not weigh as much as one with twenty;",
        "r: correlation of the mouth opening with the speech energy; face: share of frames with a face.",
        "Each cell: model / static photo / the model's mouth shuffled in time / truth (n/a: none or not measurable).",
        "",
    ]
    lines += _table("mean", [(kind, values) for kind, values in kinds.items() if values], GROUP_MEASURES) + [""]
    lines += _table("photo (real recordings)", list(photos.items()), GROUP_MEASURES) + [""]
    lines += _table("video", [(row["video"], row) for row in rows])
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{name}.json"


def run(options: argparse.Namespace) -> Path:
    """Generates and measures what ``options`` names; returns the JSON report's path."""
    from datamodules.synthetic import DEFAULT_OUT, ensure_default_corpus

    models = {"mdn": options.mdn, "renderer": options.renderer}
    videos = Path(options.videos or f"outputs/real_speech/{options.name}")
    videos.mkdir(parents=True, exist_ok=True)
    corpus = Path(options.corpus)
    if options.corpus_clips != 0 and corpus == Path(DEFAULT_OUT):
        ensure_default_corpus(corpus)
    count = "all" if options.corpus_clips is None else options.corpus_clips
    clips = f"{count} {CORPUS_SPLITS[options.split]} clips of {corpus}"
    header = {"split": options.split, "mdn": options.mdn, "renderer": options.renderer, "commit": commit(),
              "corpus": clips, "videos": str(videos)}  # fmt: skip
    rows: list[dict] = []
    path = Path(options.out) / f"{options.name}.json"
    with tempfile.TemporaryDirectory(prefix="macl-real-") as scratch:
        sources = [real_rows(options.split, models, videos, Path(scratch))] if options.recordings else []
        if options.corpus_clips != 0:
            sources.append(corpus_rows(corpus, options.split, options.corpus_clips, models, videos, Path(scratch)))
        for source in sources:
            for row in source:  # the report is rewritten after each video, so a stopped run keeps what it measured
                rows.append(row)
                path = write_report(options.name, Path(options.out), header, rows)
    return path


def clip_count(text: str) -> int | None:
    """``--corpus-clips``: ``all`` (None) or a count of at least 0."""
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected 'all' or a count of clips (0 or more), not {text!r}")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate_real", description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="dev", help="report name: <out>/<name>.json and .md")
    parser.add_argument("--split", default="dev", choices=("dev", "held-out"), help="part of the real-speech set")
    parser.add_argument("--mdn", default="runs/mdn/latest", help="MDN checkpoint or run folder")
    parser.add_argument("--renderer", default="runs/renderer/latest", help="renderer checkpoint or run folder")
    parser.add_argument(
        "--corpus", default="data/corpus/synthetic", help="the embedded corpus (val clips for dev, test for held-out)"
    )
    parser.add_argument(
        "--corpus-clips",
        type=clip_count,
        default=None,
        metavar="all|N",
        help="TTS clips to evaluate (default all of the split; 0: none)",
    )
    parser.add_argument(
        "--recordings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the real recordings x photos (--no-recordings: the TTS clips only)",
    )
    parser.add_argument("--videos", help="folder of the generated videos (default outputs/real_speech/<name>)")
    parser.add_argument("--out", default="results/real_speech", help="folder of the reports")
    options = parser.parse_args(argv)
    if not options.recordings and options.corpus_clips == 0:
        parser.error("nothing to evaluate: --no-recordings with --corpus-clips 0")
    try:
        path = run(options)
    except (MissingDataError, AlignmentError, GenerationError, CheckpointError, PhotoError, NoFaceError,
            MediaError, FileNotFoundError) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path.with_suffix(".md").read_text())
    print(f"Wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
