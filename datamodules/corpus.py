"""Finds the clips of a talking-face corpus in its published layout, with speaker ids and splits.

| layout      | tree under the corpus root                                   | speaker         | official test |
|-------------|--------------------------------------------------------------|-----------------|---------------|
| `lrs2`      | `main/<video_id>/<utt>.mp4`, `pretrain/<video_id>/<utt>.mp4`  | video id        | `test.txt`    |
| `lrs3`      | `{pretrain,trainval,test}/<video_id>/<utt>.mp4`              | video id        | `test/`       |
| `voxceleb1` | `{dev,test}/mp4/id<NNNNN>/<video>/<NNNNN>.mp4`               | `id<NNNNN>`     | `test/`       |
| `voxceleb2` | `{dev,test}/mp4/id<NNNNN>/<video>/<NNNNN>.mp4`               | `id<NNNNN>`     | `test/`       |
| `folder`    | any tree of `.mp4` files                                     | parent folder   | `test/`       |

The official test split stays the test split. The validation split is carved out of the rest by speaker,
reproducibly and stably: a speaker goes to validation when the hash of its id, read as a number in [0, 1), is
below ``val_fraction``, so its split never changes when speakers are added or removed. Small corpora fall back
to a minimum: when the threshold picks fewer than two speakers out of four or more (one out of two or three),
the speakers with the lowest hashes make up that minimum, so that identity metrics have negatives; at least one
speaker always stays in training. Only in that fallback can added speakers move a validation speaker.

A clip may carry a ground-truth sidecar ``<stem>.truth.json`` beside it (the embedded corpus writes one: its
phones and articulation); preprocessing reads it once (:func:`frame_sidecar`) for when the lips touch and each
frame's viseme (:func:`sidecar_lips_together`, :func:`sidecar_visemes`).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYOUTS = ("lrs2", "lrs3", "voxceleb1", "voxceleb2", "folder")
SPLITS = ("train", "val", "test")


# The lips' opening (``lips[:, 0]`` of a sidecar) under which they touch: a bilabial holds 0, a closed rest mouth
# about 0.01, and every other viseme opens at least 0.06 (labiodental 0.08 at the smallest speaker's gain 0.75).
LIPS_TOGETHER = 0.03


class CorpusError(ValueError):
    """A corpus folder that cannot be read in the requested layout; the message is one sentence."""


@dataclass(frozen=True)
class Clip:
    """One video of a corpus."""

    path: Path
    clip_id: str  # the path relative to the corpus root, without suffix, e.g. "trainval/0af00UcTOSc/50001"
    speaker: str
    split: str  # train, val or test


def _lrs2_test_ids(root: Path) -> set[str]:
    listing = root / "test.txt"
    if not listing.is_file():
        return set()
    return {line.split()[0] for line in listing.read_text().splitlines() if line.strip()}


def _speaker_and_test(layout: str, relative: Path, lrs2_test: set[str]) -> tuple[str, bool]:
    parts = relative.parts
    if layout == "lrs2":
        return parts[-2], f"{parts[-2]}/{relative.stem}" in lrs2_test and parts[0] == "main"
    if layout == "lrs3":
        return parts[-2], parts[0] == "test"
    if layout in ("voxceleb1", "voxceleb2"):
        return parts[-3], parts[0] == "test"
    return (parts[-2] if len(parts) > 1 else relative.stem), parts[0] == "test"


def _expected_tree(layout: str) -> str:
    return {
        "lrs2": "main/<video_id>/<utt>.mp4 or pretrain/<video_id>/<utt>.mp4",
        "lrs3": "{pretrain,trainval,test}/<video_id>/<utt>.mp4",
        "voxceleb1": "{dev,test}/mp4/id<NNNNN>/<video>/<NNNNN>.mp4",
        "voxceleb2": "{dev,test}/mp4/id<NNNNN>/<video>/<NNNNN>.mp4",
        "folder": "any tree of .mp4 files",
    }[layout]


def _in_layout(layout: str, relative: Path) -> bool:
    parts = relative.parts
    if layout == "lrs2":
        return len(parts) == 3 and parts[0] in ("main", "pretrain")
    if layout == "lrs3":
        return len(parts) == 3 and parts[0] in ("pretrain", "trainval", "test")
    if layout in ("voxceleb1", "voxceleb2"):
        return len(parts) == 5 and parts[0] in ("dev", "test") and parts[1] == "mp4" and parts[2].startswith("id")
    return True


def speaker_hash(speaker: str, seed: int = 0) -> float:
    """A reproducible number in [0, 1) for ``speaker``: its place on the validation threshold."""
    return int(hashlib.sha1(f"{seed}:{speaker}".encode()).hexdigest(), 16) / 16**40


def validation_speakers(speakers: set[str], val_fraction: float, seed: int = 0) -> set[str]:
    """The speakers held out for validation: hash below ``val_fraction``, with a small-corpus minimum (module
    docstring)."""
    if val_fraction <= 0 or len(speakers) < 2:
        return set()
    ranked = sorted(speakers, key=lambda speaker: speaker_hash(speaker, seed))
    count = sum(speaker_hash(speaker, seed) < val_fraction for speaker in ranked)
    count = max(count, 2 if len(ranked) >= 4 else 1)
    return set(ranked[: min(count, len(ranked) - 1)])


def discover(root: str | Path, layout: str, val_fraction: float = 0.1, seed: int = 0) -> list[Clip]:
    """All clips of the corpus at ``root`` in ``layout``, sorted by clip id, with speaker and split."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise CorpusError(f"Unknown corpus layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")
    if not root.is_dir():
        raise CorpusError(f"The corpus folder {root} does not exist.")
    lrs2_test = _lrs2_test_ids(root) if layout == "lrs2" else set()
    found = []
    for path in sorted(root.rglob("*.mp4")):
        relative = path.relative_to(root)
        if relative.name.startswith(".") or not _in_layout(layout, relative):
            continue
        speaker, is_test = _speaker_and_test(layout, relative, lrs2_test)
        found.append((path, relative.with_suffix("").as_posix(), speaker, is_test))
    if not found:
        raise CorpusError(f"Found no clips under {root} in the {layout} layout ({_expected_tree(layout)}).")
    held_out = validation_speakers({speaker for _, _, speaker, is_test in found if not is_test}, val_fraction, seed)
    return [
        Clip(path, clip_id, speaker, "test" if is_test else "val" if speaker in held_out else "train")
        for path, clip_id, speaker, is_test in found
    ]


def sidecar_path(stem: Path) -> Path:
    """Where the ground-truth sidecar of the clip whose path without suffix is ``stem`` is: ``<stem>.truth.json``."""
    return stem.with_name(f"{stem.name}.truth.json")


def frame_sidecar(video: Path, frames: int) -> dict | None:
    """The sidecar of the clip at ``video`` whose per-frame tracks cover its ``frames`` frames, if any."""
    path = sidecar_path(video.with_suffix(""))
    if not path.is_file():
        return None
    truth = json.loads(path.read_text())
    return truth if len(truth.get("lips") or []) == len(truth.get("visemes") or []) == frames else None


def sidecar_lips_together(truth: dict) -> np.ndarray:
    """Whether the lips touch in each frame ``[T]`` (uint8) by a :func:`frame_sidecar`'s articulation: the lips'
    opening under ``LIPS_TOGETHER``."""
    return (np.asarray(truth["lips"], np.float32)[:, 0] < LIPS_TOGETHER).astype(np.uint8)


def sidecar_visemes(truth: dict, classes: tuple[str, ...]) -> np.ndarray:
    """The viseme of each frame ``[T]`` of a :func:`frame_sidecar` (int8: its index in ``classes``, -1 for one not
    there)."""
    index = {name: position for position, name in enumerate(classes)}
    return np.array([index.get(name, -1) for name in truth["visemes"]], np.int8)
