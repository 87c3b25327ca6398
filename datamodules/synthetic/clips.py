"""One clip of the embedded corpus: a pseudo-speaker says a few sentences, its mouth follows the phonemes and
its head moves; the video, the audio, the ground-truth sidecar and (LRS3) the transcript are written."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.corpus import sidecar_path
from datamodules.media import FPS, SAMPLE_RATE, write_video
from datamodules.synthetic.articulation import CONTROL_RATE, articulate, frame_visemes
from datamodules.synthetic.faces import MAX_OPENING, MAX_SPREAD, MOUTH_CORNERS, render_frame, speaker_face
from datamodules.synthetic.speakers import SpeakerSpec
from datamodules.synthetic.speech import median_pitch, speak_clip

# Each clip's mouth opens more or less than its speaker's usual (emphasis): a spread that the audio does not
# tell, so that the mouth given the speech is one-to-many, what stage 2's mixture is for (x0.85-1.15 until
# generator version 4).
CLIP_GAIN = (0.75, 1.25)


@dataclass(frozen=True)
class ClipJob:
    """One clip to write: its speaker, its index and where it goes inside the corpus."""

    speaker: SpeakerSpec
    clip: int
    relative_path: str  # of the .mp4, inside the corpus
    seed: int
    seconds: float
    size: int
    layout: str


def head_motion(rng: np.random.Generator, frames: int, size: int, stresses: list[float]) -> np.ndarray:
    """Head motion ``[T, 4]``: roll degrees, shift x and y (pixels), log-scale.

    Idle drift (a few slow sines) plus a small nod (down and back, about 0.3 s) at each stressed syllable.
    """
    amplitudes = np.array([2.5, 0.015 * size, 0.012 * size, 0.025])
    times = np.arange(frames) / FPS
    frequencies = rng.uniform(0.1, 0.6, (1, 4, 3))
    phases = rng.uniform(0, 2 * np.pi, (1, 4, 3))
    weights = rng.dirichlet(np.ones(3), 4)[None]
    pose = amplitudes * (weights * np.sin(2 * np.pi * frequencies * times[:, None, None] + phases)).sum(-1)
    for onset in stresses:
        after = np.clip(times - onset + 0.05, 0.0, None)
        pulse = (after / 0.12) ** 2 * np.exp(2.0 - 2.0 * after / 0.12)  # peaks at 1, 70 ms after the vowel starts
        pose[:, 2] += rng.uniform(0.004, 0.009) * size * pulse
        pose[:, 3] += rng.uniform(0.0, 0.006) * pulse
    return pose


def synthesise_clip(job: ClipJob) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames ``[T, S, S, 3]`` uint8, audio ``[N]`` float32 and the ground-truth sidecar of one clip."""
    spec, size = job.speaker, job.size
    rng = np.random.default_rng([job.seed, 2, spec.index, job.clip])
    speech = speak_clip(rng, spec.voice, job.seconds)
    tracks = articulate(speech.phonemes, job.seconds, spec.style, rng)
    face = speaker_face(spec, size)
    frames = int(round(job.seconds * FPS))
    clip_gain, lip_lag = rng.uniform(*CLIP_GAIN), rng.uniform(-0.015, 0.015)
    frame_times = (np.arange(frames) + 0.5) / FPS
    steps, lip_steps = np.arange(len(tracks.opening)), (frame_times - lip_lag) * CONTROL_RATE
    openings = MAX_OPENING * size * clip_gain * np.interp(lip_steps, steps, tracks.opening)
    spreads = MAX_SPREAD * 2 * face.mouth_half_width * np.interp(lip_steps, steps, tracks.spread)
    teeth = np.interp(lip_steps, steps, tracks.teeth)
    poses = head_motion(rng, frames, size, tracks.stresses)
    video = np.empty((frames, size, size, 3), np.uint8)
    mouth_opening, lip_width = [], []
    for index in range(frames):
        video[index], points = render_frame(face, size, openings[index], spreads[index], poses[index], teeth[index])
        mouth_opening.append(float(np.linalg.norm(points[14] - points[13])))
        lip_width.append(float(np.linalg.norm(points[MOUTH_CORNERS[1]] - points[MOUTH_CORNERS[0]])))
    voice = spec.voice
    truth = {
        "fps": FPS,
        "speaker": spec.speaker_id,
        "frames": frames,
        "sample_rate": SAMPLE_RATE,
        "text": speech.text,
        "words": [[word, round(start, 4), round(end, 4)] for word, start, end in speech.words],
        "phonemes": [list(phoneme) for phoneme in speech.phonemes],
        "visemes": frame_visemes(tracks.segments, frame_times - lip_lag),
        "viseme_segments": [[viseme, round(start, 4), round(end, 4)] for viseme, start, end in tracks.segments],
        "mouth_opening": np.round(mouth_opening, 3).tolist(),
        "lip_width": np.round(lip_width, 3).tolist(),
        "lips": np.round(
            np.stack([openings / (MAX_OPENING * size), np.interp(lip_steps, steps, tracks.spread), teeth], 1), 4
        ).tolist(),
        "lips_order": ["opening", "spread", "teeth"],
        "head_pose": np.round(poses, 4).tolist(),
        "head_pose_order": ["roll_degrees", "shift_x_px", "shift_y_px", "log_scale"],
        "voice": {
            "engine": voice.engine,
            "variant": voice.variant,
            "espeak_pitch": voice.pitch,
            "tract": round(voice.tract, 4),
            "rate": round(voice.rate, 4),
            "gain_db": round(voice.gain_db, 2),
        },
        "pitch_hz": round(median_pitch(speech.audio), 1),
        "seed": job.seed,
        "clip": job.clip,
        "split": spec.split,
        "photo": spec.photo,
        "mirror": spec.mirror,
        "style": {
            "opening_gain": round(spec.style.opening_gain, 4),
            "spread_gain": round(spec.style.spread_gain, 4),
            "anticipation_s": round(spec.style.anticipation, 4),
            "rest_opening": round(spec.style.rest_opening, 4),
            "rest_spread": round(spec.style.rest_spread, 4),
        },
        "clip_gain": round(clip_gain, 4),
        "lip_lag_s": round(lip_lag, 4),
    }
    return video, speech.audio, truth


def lrs3_transcript(words: list[list]) -> str:
    """An LRS3-style ``<utt>.txt``: the text in capitals, a confidence, and one timed line per word."""
    lines = [f"Text:  {' '.join(word.upper() for word, _, _ in words)}", "Conf:  4", "", "WORD START END ASDSCORE"]
    lines += [f"{word.upper()} {start:.2f} {end:.2f} 5.0" for word, start, end in words]
    return "\n".join(lines) + "\n"


def write_clip(job: ClipJob, root: Path) -> str:
    """Writes one clip, its sidecar and (LRS3) its transcript under ``root``; returns its relative path."""
    video, audio, truth = synthesise_clip(job)
    path = root / job.relative_path
    write_video(path, video, audio)
    sidecar_path(path.with_suffix("")).write_text(json.dumps(truth, ensure_ascii=False) + "\n")
    if job.layout == "lrs3":
        path.with_suffix(".txt").write_text(lrs3_transcript(truth["words"]))
    return job.relative_path
