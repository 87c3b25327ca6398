"""Speech-like test audio: generation and the web page read it as a recording of a voice."""

import numpy as np


def speech_like(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A voiced tone at 140 Hz with harmonics, loud in syllables of about 200 ms and quiet between them."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t + seed), 0, None) ** 2
    return (0.2 * voice * envelope).astype(np.float32)
