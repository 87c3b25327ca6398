"""What a person sees of lip sync on real speech, measured with MediaPipe on a video's frames against a phone
alignment of its audio (issue 21):

- the **closure ratio**: the mean inner-lip gap at frames of p, b, m, f, v over the mean at frames of open
  vowels (0: the lips close fully on every bilabial and labiodental; 1: they do not move with the phones);
- **r(mouth, energy)**: Pearson correlation of the mouth opening with the speech's energy envelope, frame by frame;
- the **face share**: the share of frames in which MediaPipe finds a face.

Phones are IPA (the sidecars' and :func:`experiments.evaluation.phones.align_phones`'s); each frame takes the
viseme of the phone under its centre, through the embedded corpus's viseme table.
"""

from pathlib import Path

import numpy as np

from datamodules import face
from datamodules.media import FPS, read_clip
from datamodules.synthetic.articulation import PHONE_VISEMES, frame_visemes, viseme_segments
from experiments.evaluation.measure import mouth_opening_track, track_faces
from lightning_modules.video_metrics import mouth_audio_sync, speech_envelope

CLOSURE_VISEMES = ("bilabial", "labiodental")  # p b m, f v
OPEN_VISEMES = ("open", "open-round")  # æ a ɑ ɐ ʌ ɒ ɔ, and the open start of aɪ aʊ
Phones = list[tuple[str, float, float]]


def _letters(visemes: tuple[str, ...]) -> str:
    return " ".join(letter for letter, viseme in PHONE_VISEMES.items() if viseme in visemes)


FRAMES_COUNTED = (
    f"closing frames are those whose centre falls in {_letters(CLOSURE_VISEMES)}, open frames those in an open vowel "
    f"({_letters(OPEN_VISEMES)}, and the first half of aɪ aʊ ɔɪ); no other frame counts"
)


def frame_classes(phones: Phones, frames: int, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``[T]`` of the frames whose centre falls in a closing phone (p b m f v) and in an open vowel."""
    visemes = np.array(frame_visemes(viseme_segments(phones), (np.arange(frames) + 0.5) / fps))
    return np.isin(visemes, CLOSURE_VISEMES), np.isin(visemes, OPEN_VISEMES)


def closure_gaps(opening: np.ndarray, phones: Phones, fps: float = FPS) -> dict[str, float]:
    """What the closure ratio of ``opening`` ``[T]`` (NaN: no face) divides: its mean at the closing-phone frames with
    a face and at the open-vowel frames with a face (NaN where there are none), and how many of each there are."""
    closing, open_vowel = frame_classes(phones, len(opening), fps)
    seen = np.isfinite(opening)
    closing, open_vowel = closing & seen, open_vowel & seen
    return {
        "closing_frames": float(closing.sum()),
        "open_frames": float(open_vowel.sum()),
        "closing_gap": float(opening[closing].mean()) if closing.any() else float("nan"),
        "open_gap": float(opening[open_vowel].mean()) if open_vowel.any() else float("nan"),
    }


def pooled_closure_ratio(measures: list[dict]) -> float:
    """The closure ratio of several videos' frames taken together (``closure_gaps`` or ``speech_measures`` of each):
    the mean gap over all their closing frames over that over all their open-vowel frames. A video with one
    open-vowel frame then weighs as one frame; in a mean of per-video ratios it weighs as much as a video with
    twenty. NaN when either kind of frame is missing or the open-vowel mean is not positive."""
    totals = {}
    for kind in ("closing", "open"):
        counts = np.array([entry[f"{kind}_frames"] for entry in measures], np.float64)
        gaps = np.array([entry[f"{kind}_gap"] for entry in measures], np.float64)
        counted = counts > 0
        totals[kind] = (gaps[counted] * counts[counted]).sum() / counts[counted].sum() if counted.any() else np.nan
    return float(totals["closing"] / totals["open"]) if totals["open"] > 0 else float("nan")


def closure_ratio(opening: np.ndarray, phones: Phones, fps: float = FPS) -> float:
    """Mean of ``opening`` ``[T]`` (NaN: no face) at closing-phone frames over its mean at open-vowel frames;
    NaN when either kind of frame is missing or the open-vowel mean is not positive."""
    return pooled_closure_ratio([closure_gaps(opening, phones, fps)])


def speech_measures(opening: np.ndarray, audio: np.ndarray, phones: Phones, fps: float = FPS) -> dict[str, float]:
    """The closure ratio, r(mouth, energy) and face share of a mouth-opening track ``[T]`` (NaN where no face,
    any unit) against 16 kHz ``audio`` ``[N]`` and its ``phones``, with what the ratio divides (``closure_gaps``,
    for :func:`pooled_closure_ratio`)."""
    gaps = closure_gaps(opening, phones, fps)
    seen = np.isfinite(opening)
    energy_r = mouth_audio_sync(opening, speech_envelope(audio, len(opening)))["correlation"] if seen.any() else np.nan
    return {
        "closure_ratio": pooled_closure_ratio([gaps]),
        "mouth_energy_r": float(energy_r),
        "face_share": float(seen.mean()) if len(opening) else 0.0,
        "frames": float(len(opening)),
        **gaps,
    }


def landmark_opening(registered: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The inner-lip gap ``[T]`` of landmarks ``[T, 68, >=2]`` (:func:`datamodules.face.mouth_opening`: the pairs
    the MDN closes, ``lightning_modules.mdn_decoding.INNER_PAIRS``), NaN where ``valid`` ``[T]`` is False."""
    opening = face.mouth_opening(np.asarray(registered, np.float64))
    return opening if valid is None else np.where(np.asarray(valid, bool), opening, np.nan)


def mouth_track(frames: np.ndarray) -> np.ndarray:
    """MediaPipe's inner-lip gap ``[T]`` (inter-ocular units) of RGB uint8 frames ``[T, H, W, 3]``; NaN where no
    face was found (all NaN for a video without any)."""
    from datamodules.face import NoFaceError

    try:
        return mouth_opening_track(track_faces(frames))
    except NoFaceError:
        return np.full(len(frames), np.nan)


def face_region(frames: np.ndarray, box: face.CropBox, scale: float = 1.5) -> np.ndarray:
    """The part of ``frames`` ``[T, H, W, 3]`` around one face: a square of ``scale`` times the face ``box``'s side
    (clipped to the frame), so that the measures follow the face that was animated, not another face of a group."""
    half = scale * box.side / 2
    height, width = frames.shape[1:3]
    x0, y0 = max(int(box.centre_x - half), 0), max(int(box.centre_y - half), 0)
    x1, y1 = min(int(np.ceil(box.centre_x + half)), width), min(int(np.ceil(box.centre_y + half)), height)
    return np.ascontiguousarray(frames[:, y0:y1, x0:x1])


def measure_frames(frames: np.ndarray, audio: np.ndarray, phones: Phones, fps: float = FPS) -> dict[str, float]:
    """The measures of RGB uint8 frames ``[T, H, W, 3]`` with their 16 kHz ``audio`` and its ``phones``;
    a video without any face scores NaN with a face share of 0."""
    return speech_measures(mouth_track(frames), audio, phones, fps)


def shuffled_in_time(track: np.ndarray, block: int = 5, seed: int = 0) -> np.ndarray:
    """``track`` ``[T]`` cut into blocks of ``block`` frames put back in a seeded random order: a mouth that moves
    as much, but not in time with the speech (the time-shuffled baseline)."""
    blocks = [track[start : start + block] for start in range(0, len(track), block)]
    order = np.random.default_rng(seed).permutation(len(blocks))
    return np.concatenate([blocks[index] for index in order]) if blocks else track


def measure_video(path: str | Path, phones: Phones | None = None, transcript: str | None = None) -> dict[str, float]:
    """The measures of the video at ``path`` (its own audio track), against ``phones`` when given, else against
    pocketsphinx's alignment of its audio (forced to ``transcript`` when given)."""
    from experiments.evaluation.phones import align_phones

    frames, audio = read_clip(path)
    if phones is None:
        phones = align_phones(audio, transcript, name=str(path))
    return measure_frames(frames, audio, phones)
