"""From timed phonemes to mouth movement: a viseme table and coarticulation.

Each IPA symbol has a viseme and lip targets: opening (jaw and lips, 0 closed to 1 widest), spread (+ wide,
- rounded and protruded) and teeth (how much of the gap the upper teeth fill: the lower lip tucked under them
on f and v). The targets are smoothed with an asymmetric kernel that reaches further into the future
(anticipation: the lips move towards a sound before it is heard), and bilabials then close the lips fully
over their whole duration whatever their neighbours.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter1d

CONTROL_RATE = 1000  # Hz of the articulatory tracks

# viseme -> (opening, spread, teeth)
VISEMES = {
    "rest": (0.0, 0.0, 0.0),
    "bilabial": (0.0, 0.0, 0.0),
    "labiodental": (0.08, 0.0, 1.0),
    "dental": (0.2, 0.15, 0.7),
    "alveolar": (0.22, 0.2, 0.35),
    "sibilant": (0.12, 0.45, 0.8),
    "postalveolar": (0.2, -0.6, 0.6),
    "velar": (0.3, 0.0, 0.0),
    "rhotic": (0.22, -0.5, 0.0),
    "glide-round": (0.12, -1.0, 0.0),
    "glide-spread": (0.2, 0.8, 0.2),
    "open": (1.0, 0.1, 0.0),
    "open-round": (0.8, -0.55, 0.0),
    "mid": (0.65, 0.35, 0.0),
    "mid-round": (0.55, -0.8, 0.0),
    "neutral": (0.45, 0.0, 0.0),
    "spread": (0.25, 0.9, 0.3),
    "round": (0.25, -0.9, 0.0),
}
VISEME_CLASSES = tuple(VISEMES)  # the order in which shard records number the visemes (``visemes``)
PHONE_VISEMES = {
    **dict.fromkeys("pbm", "bilabial"),
    **dict.fromkeys("fv", "labiodental"),
    **dict.fromkeys("θð", "dental"),
    **dict.fromkeys("tdnlɾɫʔ", "alveolar"),
    **dict.fromkeys("sz", "sibilant"),
    **dict.fromkeys("ʃʒ", "postalveolar"),
    **dict.fromkeys("kgɡŋxh", "velar"),
    "ɹ": "rhotic",
    "r": "rhotic",
    "w": "glide-round",
    "j": "glide-spread",
    **dict.fromkeys("æaɑɐʌ", "open"),
    **dict.fromkeys("ɒɔ", "open-round"),
    **dict.fromkeys("ɛeɜ", "mid"),
    **dict.fromkeys("əɚᵻ", "neutral"),
    **dict.fromkeys("iɪ", "spread"),
    **dict.fromkeys("uʊ", "round"),
    **dict.fromkeys("oɵ", "mid-round"),
}
TRANSPARENT = "h"  # takes the lips of the sound after it


@dataclass(frozen=True)
class Style:
    """How a speaker moves: how wide it opens and spreads, how far its lips anticipate (seconds), and its rest
    mouth: parted by ``rest_opening`` (opening units) wherever no bilabial closes it, corners spread by
    ``rest_spread`` (a smile)."""

    opening_gain: float
    spread_gain: float
    anticipation: float
    rest_opening: float = 0.0
    rest_spread: float = 0.0


@dataclass
class Articulation:
    """Lip tracks at CONTROL_RATE and the viseme segments they came from."""

    opening: np.ndarray  # [M] in [0, ~1.2]
    spread: np.ndarray  # [M] in [-1, 1]
    teeth: np.ndarray  # [M] in [0, 1]
    segments: list[tuple[str, float, float]]  # viseme, start s, end s; tiles the clip
    stresses: list[float]  # onset (s) of each stressed vowel


def viseme_segments(phonemes: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Viseme of each part of each phoneme: a symbol of several letters ("tʃ", "aʊ") is split evenly.

    Stress marks are dropped, unknown letters and silence rest the mouth, h takes the next part's viseme.
    """
    parts: list[list] = []
    for symbol, start, end in phonemes:
        letters = [letter for letter in symbol if letter in PHONE_VISEMES or letter == TRANSPARENT] or [""]
        bounds = np.linspace(start, end, len(letters) + 1)
        for letter, begin, stop in zip(letters, bounds[:-1], bounds[1:], strict=True):
            parts.append([PHONE_VISEMES.get(letter, "rest") if letter != TRANSPARENT else TRANSPARENT, begin, stop])
    for index in range(len(parts) - 1, -1, -1):
        if parts[index][0] == TRANSPARENT:
            parts[index][0] = parts[index + 1][0] if index + 1 < len(parts) else "rest"
    return [(viseme, float(start), float(end)) for viseme, start, end in parts]


def _asymmetric_kernel(anticipation: float, memory: float = 0.015) -> np.ndarray:
    """Smoothing weights over offsets -reach..+reach (ms): the future side reaches ``anticipation`` (3 sigma)."""
    reach = int(anticipation * CONTROL_RATE)
    offsets = np.arange(-reach, reach + 1) / CONTROL_RATE
    spread = np.where(offsets > 0, anticipation / 3, memory)
    weights = np.exp(-0.5 * (offsets / spread) ** 2)
    return weights / weights.sum()


def articulate(
    phonemes: list[tuple[str, float, float]], seconds: float, style: Style, rng: np.random.Generator
) -> Articulation:
    """Lip tracks of a clip from its timed phonemes; each vowel opens a little more or less (one-to-many)."""
    steps = int(round(seconds * CONTROL_RATE))
    targets = np.zeros((3, steps))
    closure = np.zeros(steps)
    segments = viseme_segments(phonemes)
    for viseme, start, end in segments:
        span = slice(int(round(start * CONTROL_RATE)), min(int(round(end * CONTROL_RATE)), steps))
        opening, spread, teeth = VISEMES[viseme]
        targets[:, span] = np.array([opening * rng.uniform(0.85, 1.15), spread, teeth])[:, None]
        if viseme == "bilabial":
            closure[span] = 1.0
    # correlate1d: weight k of the kernel multiplies the target at t + (k - reach) ms, so its long side is the future
    smoothed = correlate1d(targets, _asymmetric_kernel(style.anticipation), axis=1, mode="nearest")
    hold = np.clip(2.0 * gaussian_filter1d(closure, 4.0, mode="nearest"), 0.0, 1.0)
    opening = (style.opening_gain * smoothed[0] + style.rest_opening) * (1.0 - hold)
    spread = np.clip(style.spread_gain * smoothed[1] + style.rest_spread, -1.0, 1.0)
    teeth = np.clip(smoothed[2], 0.0, 1.0)
    stresses = [start for symbol, start, _ in phonemes if symbol.startswith(("ˈ", "ˌ"))]
    return Articulation(opening, spread, teeth, segments, stresses)


def frame_visemes(segments: list[tuple[str, float, float]], times: np.ndarray) -> list[str]:
    """The viseme under each time of ``times [T]`` (seconds)."""
    starts = np.array([start for _, start, _ in segments])
    index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)
    return [
        segments[i][0] if segments[i][1] <= t < segments[i][2] else "rest" for i, t in zip(index, times, strict=True)
    ]
