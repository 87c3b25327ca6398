"""Eye blinks at a human rate: a seeded schedule that closes the eyelid landmarks now and then.

The embedded corpus's faces never blink, so the landmark model cannot learn to; a face that never blinks looks
dead. People blink every 2 to 6 s, each blink lasting 100 to 300 ms: the schedule draws the gaps and lengths
from those ranges (uniformly, from a seed), and each blink closes the lids along a half sine, fully closed in
its middle frame. Closing moves each upper-lid point and the lower-lid point below it to a meeting line a
quarter of the way up from the lower lid, as a real upper lid does most of the travel.
"""

import numpy as np

from datamodules.media import FPS

GAP_SECONDS = (2.0, 6.0)  # from one blink's start to the next one's
BLINK_SECONDS = (0.1, 0.3)
CLOSED_GAP = 0.1  # the lids' gap when shut, over the open gap
# (upper-lid point, the lower-lid point below it) of the iBUG-68 eyes: 37-41, 38-40 (right), 43-47, 44-46 (left)
LID_PAIRS = np.array([[37, 41], [38, 40], [43, 47], [44, 46]])


def blink_closure(frames: int, seed: int, fps: float = FPS) -> np.ndarray:
    """``[frames]`` float32 in [0, 1]: how far the eyes are closed in each frame (1: shut), blinks drawn from
    ``seed`` (module docstring). The first blink comes within the first gap."""
    rng = np.random.default_rng(seed)
    closure = np.zeros(frames, np.float32)
    start = rng.uniform(0.5, 1.0) * rng.uniform(*GAP_SECONDS)
    while start * fps < frames:
        length = int(np.clip(round(rng.uniform(*BLINK_SECONDS) * fps), 3, int(BLINK_SECONDS[1] * fps)))
        first = int(round(start * fps))
        shape = np.sin(np.pi * (np.arange(length) + 1) / (length + 1)).astype(np.float32)  # peak 1 in the middle
        stop = min(first + length, frames)
        closure[first:stop] = np.maximum(closure[first:stop], shape[: stop - first])
        start += rng.uniform(*GAP_SECONDS)
    return closure


def close_eyes(landmarks: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Landmarks ``[T, 68, C]`` with the lids closed by ``closure`` ``[T]`` (0: as given, 1: shut)."""
    closed = np.array(landmarks, copy=True)
    upper, lower = landmarks[:, LID_PAIRS[:, 0]], landmarks[:, LID_PAIRS[:, 1]]  # [T, 4, C]
    weight = np.asarray(closure, landmarks.dtype)[:, None, None]
    closed[:, LID_PAIRS[:, 0]] = upper + weight * (1 - CLOSED_GAP) * (lower - upper)
    return closed
