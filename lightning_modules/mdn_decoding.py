"""Turning the MDN's per-frame mixtures into tracks: highest-weight component, weighted mean, smooth samples.

Everything works on normalised target vectors (``[..., T, D]``); the LightningModule denormalises.
"""

import math

import torch
import torch.nn.functional as F

MODES = ("max", "mean", "sample")


def smoothing_radius(sigma: float) -> int:
    """Frames on each side of a frame that ``gaussian_smooth`` with ``sigma`` reads (0 when it smooths nothing)."""
    return max(1, math.ceil(3 * sigma)) if sigma > 0 else 0


def gaussian_smooth(tracks: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[..., T, D]`` smoothed along T by a Gaussian of ``sigma`` frames (edges repeated); ``sigma`` 0: unchanged."""
    if sigma <= 0 or tracks.shape[-2] < 2:
        return tracks
    radius = smoothing_radius(sigma)
    kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=tracks.device) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(tracks.dtype)
    shape = tracks.shape
    series = tracks.reshape(-1, shape[-2], shape[-1]).transpose(1, 2).reshape(-1, 1, shape[-2])  # [N * D, 1, T]
    series = F.pad(series, (radius, radius), mode="replicate")
    smoothed = F.conv1d(series, kernel.view(1, 1, -1))
    return smoothed.reshape(-1, shape[-1], shape[-2]).transpose(1, 2).reshape(shape)


def correlated_noise(shape: tuple[int, ...], correlation_frames: float, generator: torch.Generator) -> torch.Tensor:
    """Standard-normal noise ``shape = (..., T, D)`` that varies smoothly along T (on the CPU).

    White noise filtered by a Gaussian of ``correlation_frames`` and rescaled by the filter's norm, so every
    value is still N(0, 1) but neighbouring frames are strongly correlated: a sample drifts, it does not jitter.
    """
    frames = shape[-2]
    radius = max(1, math.ceil(3 * correlation_frames))
    white = torch.randn(*shape[:-2], frames + 2 * radius, shape[-1], generator=generator)
    kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / max(correlation_frames, 1e-6)) ** 2)
    kernel = kernel / kernel.norm()
    series = white.movedim(-2, -1).reshape(-1, 1, frames + 2 * radius)
    filtered = F.conv1d(series, kernel.view(1, 1, -1))  # [N, 1, T]
    return filtered.reshape(*shape[:-2], shape[-1], frames).movedim(-1, -2)


def clip_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame mixture logits ``[B, T, M]`` -> the clip's logits, their mean over the frames with ``mask`` 1,
    repeated on every frame, so that decoding keeps one component for the whole track."""
    valid = torch.ones(logits.shape[:2], device=logits.device) if mask is None else mask.to(logits.dtype)
    pooled = (logits * valid[..., None]).sum(1, keepdim=True) / valid.sum(1, keepdim=True)[..., None].clamp_min(1)
    return pooled.expand_as(logits)


def decode(
    means: torch.Tensor,
    sigmas: torch.Tensor,
    logits: torch.Tensor,
    mode: str,
    samples: int = 1,
    generator: torch.Generator | None = None,
    correlation_frames: float = 4.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mixtures ``means [B, T, M, D]``, ``sigmas``/``logits [B, T, M]`` -> tracks ``[K, B, T, D]``.

    ``max``: the mean of the component of highest weight per frame; ``mean``: the weight-averaged mean (K = 1
    for both). ``sample``: K draws, each with one uniform number per track that picks the component at every
    frame by the inverse of the cumulative weights (so a track keeps its component while the weights stay
    alike) and noise correlated over ``correlation_frames``, so that a sampled track is smooth in time. The noise
    is the component's sigma times ``temperature`` (1: the fitted density; below 1: the samples keep nearer their
    component's mean, as in sketch-rnn): one sigma spans all 142 dimensions, so at 1 every lip point gets the
    average uncertainty of all of them, head pose included.
    """
    weights = logits.float().softmax(-1)  # [B, T, M]
    if mode == "max":
        chosen = weights.argmax(-1)  # [B, T]
        return means.gather(2, chosen[..., None, None].expand(*chosen.shape, 1, means.shape[-1])).squeeze(2)[None]
    if mode == "mean":
        return (weights[..., None] * means).sum(2)[None]
    if mode != "sample":
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    batch, frames, _, dim = means.shape
    uniform = torch.rand(samples, batch, 1, 1, generator=generator).to(means.device)  # [K, B, 1, 1]
    cumulative = weights.cumsum(-1)[None]  # [1, B, T, M]
    chosen = (cumulative < uniform).sum(-1).clamp_max(weights.shape[-1] - 1)  # [K, B, T]
    noise = correlated_noise((samples, batch, frames, dim), correlation_frames, generator).to(means.device)
    expanded = means[None].expand(samples, -1, -1, -1, -1)
    picked = expanded.gather(3, chosen[..., None, None].expand(*chosen.shape, 1, dim)).squeeze(3)  # [K, B, T, D]
    spread = sigmas[None].expand(samples, -1, -1, -1).gather(3, chosen[..., None]).squeeze(3)  # [K, B, T]
    return picked + temperature * spread[..., None] * noise


UPPER_OUTER_LIP, LOWER_OUTER_LIP = [49, 50, 51, 52, 53], [55, 56, 57, 58, 59]
INNER_PAIRS = ([61, 62, 63], [67, 66, 65])  # upper and lower inner-lip points facing each other
CLOSURE_RAMP = (0.2, 0.45)  # closure probability from which the lips start to close, and are fully closed (dev set)
DIP_WINDOW = 5  # frames on either side of a frame against whose widest gaps its dip is measured (dev set)
DIP_RAMP = (0.05, 0.3)  # relative depth of a dip from which the lips start to close, and are fully closed (dev set)


def ramp(value: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """0 up to ``bounds[0]``, 1 from ``bounds[1]``, linear between: the share of the gap that closing takes."""
    low, high = bounds
    return ((value - low) / (high - low)).clamp(0, 1)


def facing_gaps(registered: torch.Tensor) -> torch.Tensor:
    """The gap between facing inner-lip points ``[..., T, 3]`` of landmarks ``[..., T, 68, >=2]`` (y down), >= 0."""
    upper, lower = INNER_PAIRS
    return (registered[..., lower, 1] - registered[..., upper, 1]).clamp_min(0)


def shrink_gap(registered: torch.Tensor, closing: torch.Tensor) -> torch.Tensor:
    """Landmarks ``[..., T, 68, >=2]`` whose inner-lip gap shrinks by ``closing [..., T]`` (0: as it is; 1: the lips
    touch); both lips move half the way, outer points with them, so the lips keep their thickness."""
    upper, lower = INNER_PAIRS
    shift = 0.5 * closing[..., None] * facing_gaps(registered)  # [..., T, 3], per facing pair
    closed = registered.clone()
    closed[..., upper, 1] += shift
    closed[..., lower, 1] -= shift
    outer_shift = shift.mean(-1, keepdim=True)  # [..., T, 1]
    closed[..., UPPER_OUTER_LIP, 1] += outer_shift
    closed[..., LOWER_OUTER_LIP, 1] -= outer_shift
    return closed


def close_lips(registered: torch.Tensor, closure_probability: torch.Tensor) -> torch.Tensor:
    """Landmarks ``[..., T, 68, >=2]`` whose lips close where the closure head says so: the gap shrinks by a share
    ramping from 0 at ``CLOSURE_RAMP[0]`` to 1 at ``CLOSURE_RAMP[1]`` of ``closure_probability [..., T]``. A short
    p, b or m is thus closed, not averaged half open by the mixture."""
    return shrink_gap(registered, ramp(closure_probability, CLOSURE_RAMP))


def dip_depth(gap: torch.Tensor, window: int = DIP_WINDOW) -> torch.Tensor:
    """How deep each frame of ``gap [..., T]`` lies below the lower of the widest gaps within ``window`` frames
    before it and after it, as a share of that gap (0 where it is no lower, as on a slope or at the edges)."""
    frames = gap.shape[-1]
    padded = F.pad(gap.reshape(-1, 1, frames), (window, window), mode="replicate")  # [N, 1, T + 2 * window]
    widest = F.max_pool1d(padded, window, stride=1)  # [N, 1, T + window + 1]: the widest of each run of window
    rim = torch.minimum(widest[..., :frames], widest[..., window + 1 :]).reshape(gap.shape)  # before, after
    return (1 - gap / rim.clamp_min(1e-6)).clamp_min(0)


def deepen_dips(registered: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
    """Landmarks ``[..., T, 68, >=2]`` whose mouth closes where the opening of ``measured`` (the same track before
    smoothing, say; default ``registered``) dips: the gap shrinks by a share ramping from 0 at ``DIP_RAMP[0]`` to 1 at
    ``DIP_RAMP[1]`` of the dip's depth (``dip_depth``). A closure that the mixture's component and the smoothing
    leave a third open between two vowels is closed; a mouth that stays open or opens and closes slowly is not
    moved."""
    measured = registered if measured is None else measured
    return shrink_gap(registered, ramp(dip_depth(facing_gaps(measured).mean(-1)), DIP_RAMP))


def decoding_radius(sigma: float) -> int:
    """Frames on each side of a frame that closure-aware decoding reads: the smoothing's, then the dip's window."""
    return smoothing_radius(sigma) + DIP_WINDOW


def crossfaded(mixture_of, audio: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
    """``mixture_of(audio [B, t, ...]) -> {name: [B, t, ...]}`` applied to windows of ``chunk`` frames that overlap
    by a quarter and cross-faded linearly, so that any T costs memory of one window only."""
    frames = audio.shape[1]
    if frames <= chunk:
        return mixture_of(audio)
    overlap = chunk // 4
    starts = [*range(0, frames - chunk, chunk - overlap), frames - chunk]
    fade = torch.arange(1, overlap + 1, device=audio.device) / (overlap + 1)
    totals: dict[str, torch.Tensor] = {}
    weight_sum = torch.zeros(frames, device=audio.device)
    for start in starts:
        ramp = torch.ones(chunk, device=audio.device)
        if start > 0:
            ramp[:overlap] = fade
        if start + chunk < frames:
            ramp[-overlap:] = fade.flip(0)
        for name, value in mixture_of(audio[:, start : start + chunk]).items():
            total = totals.setdefault(name, value.new_zeros(value.shape[0], frames, *value.shape[2:]))
            total[:, start : start + chunk] += value * ramp.view(1, -1, *[1] * (value.dim() - 2))
        weight_sum[start : start + chunk] += ramp
    return {name: total / weight_sum.view(1, -1, *[1] * (total.dim() - 2)) for name, total in totals.items()}
