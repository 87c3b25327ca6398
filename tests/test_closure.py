"""The real-speech measure (closure ratio, r(mouth, energy), face share) on inputs whose answer is known: mouth
tracks and landmark sequences made to close exactly on the aligned bilabials, a static face, and the embedded
corpus's videos against their sidecars."""

import json

import numpy as np
import pytest

from datamodules.face import CANONICAL_FACE, LOWER_INNER_LIP, UPPER_INNER_LIP, CropBox
from datamodules.media import FPS, SAMPLE_RATE, read_clip
from experiments.evaluation.closure import (
    closure_ratio,
    face_region,
    frame_classes,
    landmark_opening,
    measure_frames,
    pooled_closure_ratio,
    shuffled_in_time,
    speech_measures,
)
from experiments.evaluation.measure import Track, mouth_opening_track
from lightning_modules.mdn_decoding import INNER_PAIRS

# 2 s: silence, "ma", "pa", "fa", "ba", silence; every phone spans whole 40 ms frames.
PHONES = [
    ("", 0.0, 0.2), ("m", 0.2, 0.32), ("ˈæ", 0.32, 0.52), ("p", 0.52, 0.6), ("ɑ", 0.6, 0.8), ("f", 0.8, 0.88),
    ("ɑ", 0.88, 1.08), ("b", 1.08, 1.16), ("æ", 1.16, 1.4), ("n", 1.4, 1.6), ("", 1.6, 2.0),
]  # fmt: skip
FRAMES = 50


def _speech(opening: np.ndarray) -> np.ndarray:
    """Noise whose loudness per frame follows ``opening`` ``[T]`` (louder when the mouth is more open)."""
    rng = np.random.default_rng(0)
    gain = np.repeat(0.01 + 0.5 * opening, SAMPLE_RATE // FPS)
    return (rng.normal(size=len(gain)) * gain).astype(np.float32)


def _lips_follow_phones() -> np.ndarray:
    """A mouth opening ``[T]``: shut on p b m f v, widest on the open vowels, half open elsewhere in speech."""
    closing, open_vowel = frame_classes(PHONES, FRAMES)
    speaking = (np.arange(FRAMES) >= 5) & (np.arange(FRAMES) < 40)
    return np.where(closing, 0.0, np.where(open_vowel, 1.0, np.where(speaking, 0.5, 0.0)))


def test_frame_classes_follow_the_phones():
    closing, open_vowel = frame_classes(PHONES, FRAMES)
    assert np.flatnonzero(closing).tolist() == [5, 6, 7, 13, 14, 20, 21, 27, 28]
    assert open_vowel.sum() == 5 + 5 + 5 + 6
    assert not (closing & open_vowel).any()


def test_lips_closing_on_the_bilabials_score_zero_and_a_static_mouth_one():
    opening = _lips_follow_phones()
    audio = _speech(opening)
    moving = speech_measures(opening, audio, PHONES)
    assert moving["closure_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert moving["mouth_energy_r"] > 0.9
    assert moving["face_share"] == 1.0
    static = speech_measures(np.full(FRAMES, 0.3), audio, PHONES)
    assert static["closure_ratio"] == pytest.approx(1.0)
    assert np.nan_to_num(static["mouth_energy_r"]) == pytest.approx(0.0, abs=1e-6)  # a still mouth: no correlation
    backwards = speech_measures(1.0 - opening, audio, PHONES)  # open on p b m, shut on the vowels
    assert backwards["closure_ratio"] > 10 or np.isnan(backwards["closure_ratio"])
    assert backwards["mouth_energy_r"] < -0.5


def test_time_shuffled_lips_lose_the_closures_and_the_sync():
    opening = _lips_follow_phones()
    shuffled = shuffled_in_time(opening)
    assert sorted(shuffled) == sorted(opening)  # the same motion, in another order
    values = speech_measures(shuffled, _speech(opening), PHONES)
    assert values["closure_ratio"] > 0.3
    assert values["mouth_energy_r"] < 0.5


def test_frames_without_a_face_are_left_out_and_counted():
    opening = _lips_follow_phones()
    opening[20:22] = np.nan  # the two frames of f
    values = speech_measures(opening, _speech(_lips_follow_phones()), PHONES)
    assert values["face_share"] == pytest.approx(48 / 50)
    assert values["closure_ratio"] == pytest.approx(0.0, abs=1e-9)


def test_pooled_videos_score_as_their_frames_taken_together():
    """Two videos measured apart and pooled score as the one video made of both, and a video with a single
    open-vowel frame, shut there, weighs as that one frame, not as a whole video's ratio."""
    rng = np.random.default_rng(2)
    first = _lips_follow_phones() + rng.uniform(0.0, 0.05, FRAMES)  # the lips never quite touch
    second = 2.0 * _lips_follow_phones() + rng.uniform(0.0, 0.05, FRAMES)
    later = [(phone, start + FRAMES / FPS, end + FRAMES / FPS) for phone, start, end in PHONES]
    both = closure_ratio(np.concatenate([first, second]), PHONES + later)
    measured = [speech_measures(track, _speech(track), PHONES) for track in (first, second)]
    assert pooled_closure_ratio(measured) == pytest.approx(both)
    assert pooled_closure_ratio(measured[:1]) == pytest.approx(measured[0]["closure_ratio"])
    one_vowel = [("p", 0.0, 0.12), ("ɑ", 0.12, 0.16), ("", 0.16, 2.0)]  # 3 closing frames, 1 open-vowel frame
    shut = np.full(FRAMES, 0.02)
    brief = speech_measures(shut, _speech(shut), one_vowel)
    assert brief["closure_ratio"] == pytest.approx(1.0)
    pooled = pooled_closure_ratio([measured[0], brief])
    closing, open_vowel = frame_classes(PHONES, FRAMES)
    expected = np.r_[first[closing], shut[:3]].mean() / np.r_[first[open_vowel], shut[3:4]].mean()
    assert pooled == pytest.approx(expected)
    assert np.isnan(pooled_closure_ratio([brief | {"open_frames": 0.0, "open_gap": float("nan")}]))


def test_a_landmark_track_that_closes_on_the_bilabials_scores_near_zero():
    """The part after face tracking: canonical faces (300 px between the eyes) whose inner lips touch, the lower
    dropping by the opening, with a little tracking noise."""
    opening = _lips_follow_phones()
    rng = np.random.default_rng(1)
    landmarks = np.repeat(CANONICAL_FACE[None] * 300.0 + 400.0, FRAMES, 0)
    landmarks += rng.normal(scale=0.5, size=landmarks.shape).astype(np.float32)
    closed = landmarks[:, UPPER_INNER_LIP, 1]  # the canonical mouth is a little open: shut it first
    landmarks[:, LOWER_INNER_LIP, 1] = closed + 30.0 * opening[:, None]
    landmarks[:, 55:60, 1] += 30.0 * opening[:, None]  # the outer lower lip moves with it
    moving = speech_measures(mouth_opening_track(Track(landmarks, np.ones(FRAMES, bool))), _speech(opening), PHONES)
    assert moving["closure_ratio"] < 0.1
    assert moving["mouth_energy_r"] > 0.8
    still = np.repeat(landmarks[10:11], FRAMES, 0)  # held on an open vowel
    still_opening = mouth_opening_track(Track(still, np.ones(FRAMES, bool)))
    assert speech_measures(still_opening, _speech(opening), PHONES)["closure_ratio"] == pytest.approx(1.0)


def test_corpus_videos_close_on_their_bilabials_and_the_static_face_does_not(synthetic_corpus):
    """MediaPipe on the embedded corpus's held-out clips against their sidecars' phones: the truth's lips close
    (issue 21: below 0.2 in the corpus's truth; 2 s clips are noisy, hence the margin), a repeated first frame
    (the widest open) scores 1."""
    ratios, static_ratios = [], []
    for clip in sorted((synthetic_corpus / "test").rglob("*.mp4")):
        sidecar = json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())
        phones = [tuple(phone) for phone in sidecar["phonemes"]]
        frames, audio = read_clip(clip)
        truth = measure_frames(frames, audio, phones)
        assert truth["face_share"] == 1.0
        assert truth["mouth_energy_r"] > 0.3
        ratios.append(truth["closure_ratio"])
        widest = int(np.argmax(sidecar["mouth_opening"]))
        static_ratios.append(
            measure_frames(np.repeat(frames[widest : widest + 1], len(frames), 0), audio, phones)["closure_ratio"]
        )
    assert np.isfinite(ratios).sum() >= 3  # a 2 s clip may have no p b m f v
    assert np.nanmean(ratios) < 0.35
    assert np.nanmean(static_ratios) == pytest.approx(1.0, abs=0.1)  # MediaPipe jitters on still frames


def test_the_measure_follows_the_face_it_is_given_in_a_frame_of_two(synthetic_corpus):
    """Two faces side by side, a speaking one and a still copy of its widest-open frame: measured around each
    face's box, the speaking one scores as the clip does and the still one as a static face, whichever face
    MediaPipe would pick in the whole frame (a group photo's animated face is its largest, not MediaPipe's first)."""
    clip = sorted((synthetic_corpus / "test").rglob("*.mp4"))[0]
    sidecar = json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())
    phones = [tuple(phone) for phone in sidecar["phonemes"]]
    frames, audio = read_clip(clip)
    widest = int(np.argmax(sidecar["mouth_opening"]))
    side = frames.shape[2]
    pair = np.concatenate([np.repeat(frames[widest : widest + 1], len(frames), 0), frames], axis=2)
    still_box, speaking_box = (CropBox(side * (k + 0.5), frames.shape[1] / 2, side * 0.6) for k in (0, 1))
    speaking = measure_frames(face_region(pair, speaking_box), audio, phones)
    still = measure_frames(face_region(pair, still_box), audio, phones)
    assert speaking["mouth_energy_r"] > 0.3 and still["mouth_energy_r"] < 0.2
    assert still["closure_ratio"] == pytest.approx(1.0, abs=0.1)


def test_a_video_without_a_face_has_no_ratio_and_a_face_share_of_zero():
    frames = np.full((10, 64, 64, 3), 128, np.uint8)
    values = measure_frames(frames, np.zeros(10 * SAMPLE_RATE // FPS, np.float32), PHONES)
    assert values["face_share"] == 0.0
    assert np.isnan(values["closure_ratio"])


def test_the_landmark_gap_is_the_one_the_mdn_closes():
    """Evaluation's inner-lip gap (datamodules.face.mouth_opening) and the MDN's closure (INNER_PAIRS) name the same
    facing points; frames that are not valid are left out."""
    assert (UPPER_INNER_LIP, LOWER_INNER_LIP) == tuple(INNER_PAIRS)
    faces = np.repeat(CANONICAL_FACE[None], 3, 0)
    faces[:, LOWER_INNER_LIP, 1] = faces[:, UPPER_INNER_LIP, 1] + np.array([0.0, 0.1, 0.2])[:, None]
    opening = landmark_opening(faces, np.array([True, True, False]))
    np.testing.assert_allclose(opening[:2], [0.0, 0.1], atol=1e-6)
    assert np.isnan(opening[2])
