"""Audio-visual sync scores with an offset search: LSE-D / LSE-C (published SyncNet) and the project's sync expert.

Both embed every video frame (its 5-frame stack) and the audio around it, compare frame ``t``'s visual embedding
with the audio embeddings of frames ``t + d`` for ``d`` in ``-max_offset .. max_offset`` (15 as published), average
each offset's distance over the clip, and report the smallest mean distance (``distance``; LSE-D), the median
minus that minimum (``confidence``; LSE-C) and the best offset. Offsets here are **the audio's delay in frames**,
positive when the audio comes late (syncnet_python prints the opposite sign).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.fft import dct

from lightning_modules.checkpoints import (
    CheckpointError,
    constructor_arguments,
    load_sub_state_dict,
    read_stage_checkpoint,
)
from lightning_modules.nets.syncnet import SyncNet

MAX_OFFSET = 15
SYNCNET_NOT_COMPUTED = "not computed (needs SyncNet weights: --syncnet PATH)"
SAMPLE_RATE = 16_000
MFCC_PER_FRAME = 4  # 10 ms MFCC steps per 40 ms video frame
SYNCNET_CROP = 224
SYNCNET_CROP_SCALE = 0.4  # syncnet_python's crop_scale: the face box padded by this much of its half-side
SYNCNET_PAD_VALUE = 110  # grey that syncnet_python pads frames with before cropping


@dataclass(frozen=True)
class SyncScore:
    """The outcome of an offset search (module docstring): distances, confidence, offset in frames."""

    distance: float
    confidence: float
    offset: int
    distance_at_zero: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{name}": float(value) for name, value in asdict(self).items()}


def offset_search(
    visual: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET, metric: str = "euclidean"
) -> SyncScore:
    """Offset search over embeddings ``visual`` and ``audio`` ``[T, D]`` of the same frames.

    ``metric="euclidean"`` is syncnet_python's: the audio track is zero-padded at both ends and every frame's
    distance at every offset counts. ``metric="cosine"`` (1 - cosine similarity) averages only over the frames
    whose shifted audio exists.
    """
    frames = min(len(visual), len(audio))
    visual, audio = visual[:frames].float(), audio[:frames].float()
    offsets = range(-max_offset, max_offset + 1)
    if metric == "euclidean":
        padded = F.pad(audio, (0, 0, max_offset, max_offset))
        windows = torch.stack([padded[max_offset + d : max_offset + d + frames] for d in offsets])  # [O, T, D]
        mean = F.pairwise_distance(visual[None].expand_as(windows), windows).mean(1)
    elif metric == "cosine":
        mean = torch.full((len(offsets),), float("nan"))
        for index, d in enumerate(offsets):
            start, stop = max(0, -d), min(frames, frames - d)
            if stop > start:
                similarity = F.cosine_similarity(visual[start:stop], audio[start + d : stop + d], dim=-1)
                mean[index] = (1.0 - similarity).mean()
    else:
        raise ValueError(f"unknown metric {metric!r}; use 'euclidean' or 'cosine'")
    best = int(torch.where(torch.isnan(mean), torch.inf, mean).argmin())
    minimum = mean[best]
    median = torch.nanmedian(mean)
    return SyncScore(float(minimum), float(median - minimum), best - max_offset, float(mean[max_offset]))


def mfcc(audio: np.ndarray) -> np.ndarray:
    """SyncNet's audio features ``[13, N]`` of 16 kHz mono float ``audio`` ``[samples]`` in [-1, 1].

    The MFCC of python_speech_features with its defaults, on 16-bit sample values as syncnet_python reads them:
    pre-emphasis 0.97, 25 ms rectangular frames every 10 ms, 512-point power spectrum, 26 mel filters over
    0-8 kHz, log, orthonormal DCT-II, 13 coefficients, sinusoidal lifter 22, the first replaced by log energy.
    """
    signal = np.asarray(audio, np.float64) * 32768.0
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    frame_length, step, nfft, filters = 400, 160, 512, 26
    count = 1 if len(signal) <= frame_length else 1 + int(np.ceil((len(signal) - frame_length) / step))
    signal = np.concatenate([signal, np.zeros((count - 1) * step + frame_length - len(signal))])
    indices = np.arange(frame_length)[None, :] + step * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(signal[indices], nfft)) ** 2 / nfft  # [N, 257]
    energy = power.sum(1)
    energy[energy == 0] = np.finfo(float).eps
    mels = np.linspace(0.0, 2595.0 * np.log10(1.0 + (SAMPLE_RATE / 2) / 700.0), filters + 2)
    bins = np.floor((nfft + 1) * (700.0 * (10 ** (mels / 2595.0) - 1.0)) / SAMPLE_RATE).astype(int)
    bank = np.zeros((filters, nfft // 2 + 1))
    for j in range(filters):
        low, centre, high = bins[j], bins[j + 1], bins[j + 2]
        bank[j, low:centre] = (np.arange(low, centre) - low) / (centre - low)
        bank[j, centre:high] = (high - np.arange(centre, high)) / (high - centre)
    features = power @ bank.T
    features[features == 0] = np.finfo(float).eps
    cepstra = dct(np.log(features), type=2, axis=1, norm="ortho")[:, :13]
    cepstra *= 1.0 + 11.0 * np.sin(np.pi * np.arange(13) / 22.0)
    cepstra[:, 0] = np.log(energy)
    return cepstra.T.astype(np.float32)


class SyncNetScorer:
    """LSE-D / LSE-C with the published SyncNet weights (``syncnet_v2.model``); refuses any other file."""

    def __init__(self, weights: str | Path, device: str = "cpu", batch_size: int = 20):
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist; give the published SyncNet weights (syncnet_v2.model).")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 -- any unreadable file gets the same one sentence
            raise CheckpointError(f"{path} is not a readable SyncNet state dict ({type(error).__name__}).") from error
        self.net = SyncNet()
        expected = self.net.state_dict()
        if not isinstance(state, dict) or set(state) != set(expected):
            raise CheckpointError(f"{path} is not a SyncNet state dict (its keys are not syncnet_python's).")
        wrong = [name for name, value in state.items() if tuple(value.shape) != tuple(expected[name].shape)]
        if wrong:
            raise CheckpointError(f"{path} has SyncNet keys of the wrong shape (e.g. {wrong[0]}).")
        self.net.load_state_dict(state)
        self.net.eval().to(device)
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def score(self, crops: np.ndarray, audio: np.ndarray, max_offset: int = MAX_OFFSET) -> SyncScore:
        """Scores face crops ``[T, 224, 224, 3]`` RGB uint8 (:func:`syncnet_crop`) against 16 kHz ``audio``."""
        cepstra = torch.from_numpy(mfcc(audio))  # [13, 4T']
        frames = min(len(crops), len(audio) // (SAMPLE_RATE // 25))
        last = frames - 5
        if last < 1:
            raise ValueError(f"a clip of {frames} frames is too short for SyncNet (at least 6 frames)")
        video = torch.from_numpy(np.ascontiguousarray(crops[:frames, :, :, ::-1])).float()  # BGR 0-255
        video = video.permute(3, 0, 1, 2)  # [3, T, H, W]
        visual, acoustic = [], []
        for start in range(0, last, self.batch_size):
            index = range(start, min(last, start + self.batch_size))
            stacks = torch.stack([video[:, i : i + 5] for i in index]).to(self.device)
            windows = torch.stack([cepstra[None, :, 4 * i : 4 * i + 20] for i in index]).to(self.device)
            visual.append(self.net.forward_lip(stacks).cpu())
            acoustic.append(self.net.forward_audio(windows).cpu())
        return offset_search(torch.cat(visual), torch.cat(acoustic), max_offset, "euclidean")


def syncnet_crop(frame: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
    """syncnet_python's face crop ``[224, 224, 3]`` of an ``[H, W, 3]`` frame for a face box (centre x, y, half side).

    The box is padded by ``0.4`` of its half side on each side and twice that below (the mouth), the frame by grey.
    """
    centre_x, centre_y, half = box
    pad = int(half * (1 + 2 * SYNCNET_CROP_SCALE))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=SYNCNET_PAD_VALUE)
    y, x = centre_y + pad, centre_x + pad
    face = padded[
        int(y - half) : int(y + half * (1 + 2 * SYNCNET_CROP_SCALE)),
        int(x - half * (1 + SYNCNET_CROP_SCALE)) : int(x + half * (1 + SYNCNET_CROP_SCALE)),
    ]
    return cv2.resize(face, (SYNCNET_CROP, SYNCNET_CROP))


class SFESyncExpert:
    """The project's own sync expert: a stage-1 SFE checkpoint (its own seed, never an evaluated model) as a scorer.

    Its audio content features (per frame, mel windows ``[T, 20, 80]``) and visual content features (per frame,
    5-frame stacks ``[T, 5, 3, S, S]`` in [0, 1], the crops it was trained on) go through the same offset search
    with the cosine distance. The audio branch runs on steps ``step_stride`` frames apart as in training, once
    per phase, in chunks of ``steps`` steps, so that every frame gets a feature.
    """

    def __init__(self, checkpoint: str | Path, steps: int = 8):
        from lightning_modules.sfe import EXPECTED, STAGE, SFEPretraining

        loaded = read_stage_checkpoint(checkpoint, STAGE, EXPECTED)
        self.model = SFEPretraining(**constructor_arguments(SFEPretraining, loaded, checkpoint, EXPECTED))
        load_sub_state_dict(self.model, loaded, "", checkpoint, EXPECTED)
        self.model.eval()
        data = loaded.get("datamodule_hyper_parameters") or {}
        stride = (loaded.get("hyper_parameters") or {}).get("step_stride", 3)
        self.step_stride = int(data.get("step_stride", stride))
        self.steps = int(data.get("steps", steps))
        self.visual_input = str(data.get("visual_input", "mouth"))
        self.path = Path(checkpoint)

    @torch.no_grad()
    def features(self, audio: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame content features ``[T, D]`` (visual, audio) of mel windows and frame stacks."""
        total = len(audio)
        visual, acoustic = torch.zeros(total, 0), torch.zeros(total, 0)
        for phase in range(min(self.step_stride, total)):
            indices = torch.arange(phase, total, self.step_stride)
            for chunk in indices.split(self.steps):
                content_audio = self.model.audio(audio[chunk][None])["content"][0]
                content_visual = self.model.visual(frames[chunk][None])[0][0]
                if visual.shape[1] == 0:
                    visual = torch.zeros(total, content_visual.shape[-1])
                    acoustic = torch.zeros(total, content_audio.shape[-1])
                visual[chunk], acoustic[chunk] = content_visual, content_audio
        return visual, acoustic

    def score(self, audio: torch.Tensor, frames: torch.Tensor, max_offset: int = MAX_OFFSET) -> SyncScore:
        """The offset search (module docstring) on this clip's per-frame content features."""
        visual, acoustic = self.features(audio.float(), frames.float())
        return offset_search(visual, acoustic, max_offset, "cosine")
