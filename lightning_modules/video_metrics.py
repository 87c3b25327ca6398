"""Metrics of generated video: image quality (SSIM, PSNR, CPBD sharpness) and the weight-free mouth-audio sync.

Landmark metrics (LMD, LVD) live in :mod:`lightning_modules.metrics`; the SyncNet-style scores (LSE-D / LSE-C and
the project's own sync expert) in :mod:`lightning_modules.sync_scoring`.
"""

import numpy as np
import torch
from scipy.ndimage import sobel
from skimage.feature import canny
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

PSNR_CAP = 100.0  # dB: identical images (MSE 0, PSNR infinite) report this, so that means over frames stay finite
CPBD_BLOCK = 64  # pixels: the side of the blocks whose contrast sets the just-noticeable blur width
CPBD_EDGE_FRACTION = 0.002  # a block with fewer edge pixels than this fraction is not an edge block
CPBD_BETA = 3.6  # slope of the probability-of-blur-detection psychometric function
CPBD_PROBABILITY_JNB = 0.63  # P_JNB: an edge whose blur is detected with at most this probability counts as sharp
AUDIO_FRAME_SAMPLES = 640  # 16 kHz audio samples per video frame at 25 fps


def image_quality(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame SSIM and PSNR (dB, capped at ``PSNR_CAP``) of ``[N, 3, H, W]`` images in [0, 1] (torchmetrics)."""
    prediction, target = prediction.float(), target.float()
    ssim = structural_similarity_index_measure(prediction, target, data_range=1.0, reduction="none")
    psnr = peak_signal_noise_ratio(prediction, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {"ssim": ssim, "psnr": psnr.clamp(max=PSNR_CAP)}


def _vertical_edges(gray: np.ndarray) -> np.ndarray:
    """Sobel vertical edges ``[H, W]`` bool: squared horizontal gradient above 4x its mean, thinned to local maxima."""
    strength = sobel(gray, axis=1) ** 2
    strength[strength <= 4.0 * strength.mean()] = 0.0
    padded = np.pad(strength, 1)
    along_x = (strength > padded[1:-1, :-2]) & (strength > padded[1:-1, 2:])
    along_y = (strength > padded[:-2, 1:-1]) & (strength > padded[2:, 1:-1])
    return along_x | along_y


def _edge_widths(gray: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano widths ``[H, W]`` (0 off the measured edges) along each row of ``gray`` ``[H, W]``.

    Measured at edge pixels whose gradient points left or right (angle within 22.5 degrees of horizontal): the
    distance between the intensity extrema on either side along the row, searched from the pixel's neighbours
    outwards (a rising edge runs from the local minimum on its left to the local maximum on its right).
    """
    height, width = gray.shape
    gradient_y, gradient_x = np.gradient(gray)
    angle = np.degrees(np.arctan2(gradient_y, gradient_x))
    horizontal = (np.abs(angle) < 22.5) | (np.abs(angle) > 157.5)
    measured = edges & horizontal
    measured[[0, -1], :] = False
    measured[:, [0, -1]] = False
    difference = np.diff(gray, axis=1)  # [H, W - 1]: I[j + 1] - I[j]
    columns = np.broadcast_to(np.arange(width), gray.shape)
    widths = np.zeros(gray.shape)
    for sign in (1.0, -1.0):
        # Extremum to the right of k: the first k' >= k with sign * (I[k' + 1] - I[k']) <= 0.
        stops_right = np.concatenate([sign * difference <= 0, np.ones((height, 1), bool)], axis=1)
        right = np.flip(np.minimum.accumulate(np.flip(np.where(stops_right, columns, width - 1), 1), axis=1), 1)
        # Extremum to the left of k: the last k' <= k with sign * (I[k'] - I[k' - 1]) <= 0.
        stops_left = np.concatenate([np.ones((height, 1), bool), sign * difference <= 0], axis=1)
        left = np.maximum.accumulate(np.where(stops_left, columns, 0), axis=1)
        span = np.zeros(gray.shape)
        span[:, 1:-1] = right[:, 2:] - left[:, :-2]  # searched from the neighbours j + 1 and j - 1
        selected = measured & (sign * gradient_x > 0)
        widths[selected] = span[selected]
    return widths


def cpbd(image: np.ndarray) -> float:
    """Cumulative probability of blur detection (Narvekar and Karam, IEEE TIP 2011) of an image; higher is sharper.

    ``image`` is ``[H, W]`` gray or ``[H, W, 3]`` RGB, uint8 or float in [0, 1]. Canny edges decide which 64 x 64
    blocks are edge blocks; at the Sobel vertical-edge pixels of those blocks, the edge width (Marziliano) is
    compared with the block's just-noticeable-blur width (5 pixels at contrast <= 50 of 255, else 3) through
    ``P = 1 - exp(-(w / w_JNB) ** 3.6)``; the score is the fraction of those edges whose blur is detected with
    probability at most 63 %. 0 when the image has no measured edge.
    """
    image = np.asarray(image)
    gray = image.astype(np.float64) * (1.0 if image.dtype == np.uint8 else 255.0)
    if gray.ndim == 3:
        gray = gray @ np.array([0.299, 0.587, 0.114])
    gray = np.round(gray)
    block_edges = canny(gray / 255.0)
    widths = _edge_widths(gray, _vertical_edges(gray))
    probabilities = []
    for top in range(0, gray.shape[0] - CPBD_BLOCK + 1, CPBD_BLOCK):
        for left in range(0, gray.shape[1] - CPBD_BLOCK + 1, CPBD_BLOCK):
            block = (slice(top, top + CPBD_BLOCK), slice(left, left + CPBD_BLOCK))
            if block_edges[block].sum() <= CPBD_EDGE_FRACTION * CPBD_BLOCK**2:
                continue
            width_jnb = 5.0 if gray[block].max() - gray[block].min() <= 50 else 3.0
            block_widths = widths[block][widths[block] > 0]
            probabilities.append(1.0 - np.exp(-((block_widths / width_jnb) ** CPBD_BETA)))
    probabilities = np.concatenate(probabilities) if probabilities else np.zeros(0)
    if not len(probabilities):
        return 0.0
    return float((np.round(100 * probabilities) <= 100 * CPBD_PROBABILITY_JNB).mean())


def speech_envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """Energy envelope ``[frames]`` of 16 kHz ``audio`` ``[N]``: log RMS (dB) of each video frame's 40 ms."""
    samples = np.zeros(frames * AUDIO_FRAME_SAMPLES, np.float64)
    usable = min(len(audio), len(samples))
    samples[:usable] = audio[:usable]
    rms = np.sqrt((samples.reshape(frames, AUDIO_FRAME_SAMPLES) ** 2).mean(1))
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def lagged_correlation(visual: np.ndarray, acoustic: np.ndarray, max_offset: int) -> np.ndarray:
    """Pearson correlation ``[2 * max_offset + 1]`` of ``visual[t]`` with ``acoustic[t + d]`` for d in -max..max.

    Only the frames both series cover at each offset count; NaN entries of ``visual`` (no face) are left out.
    """
    visual, acoustic = np.asarray(visual, np.float64), np.asarray(acoustic, np.float64)
    correlations = np.full(2 * max_offset + 1, np.nan)
    for index, offset in enumerate(range(-max_offset, max_offset + 1)):
        start, stop = max(0, -offset), min(len(visual), len(acoustic) - offset)
        if stop - start < 3:
            continue
        x, y = visual[start:stop], acoustic[start + offset : stop + offset]
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
        norm = np.sqrt((x**2).sum() * (y**2).sum())
        if len(x) >= 3 and norm > 0:
            correlations[index] = (x * y).sum() / norm
    return correlations


def mouth_audio_sync(mouth_opening: np.ndarray, envelope: np.ndarray, max_offset: int = 15) -> dict[str, float]:
    """Weight-free sync of a mouth-opening track ``[T]`` with the speech energy envelope ``[T]`` of the same frames
    (:func:`speech_envelope`, or any per-frame loudness such as the mean log-mel).

    Returns the correlation at offset 0, the peak correlation over offsets of up to ``max_offset`` frames and the
    offset of that peak (frames; positive when the audio comes late relative to the mouth).
    """
    correlations = lagged_correlation(mouth_opening, envelope, max_offset)
    if np.all(np.isnan(correlations)):
        return {"correlation": float("nan"), "peak_correlation": float("nan"), "offset": float("nan")}
    peak = int(np.nanargmax(correlations))
    return {
        "correlation": float(correlations[max_offset]),
        "peak_correlation": float(correlations[peak]),
        "offset": float(peak - max_offset),
    }
