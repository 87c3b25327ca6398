"""Live decoding of the stage-2 MDN: landmarks a few frames at a time as the audio arrives, each frame's audio
encoded once and the past carried as state instead of recomputed.

The SFE's audio encoder is per frame, so a frame is encoded when it is heard and kept until it is emitted. The
forward direction of the BiGRU carries its state (one per stride phase) across calls, so the whole past counts at
no cost; the backward direction runs over the frames to emit and the look-ahead heard after them, from zeros at the
look-ahead's end, as a bounded look-ahead implies. Decoding is ``LandmarkMDN.tracks`` (mixture mode, smoothing,
closure head, dips) on the new frames after the mixtures of the emitted frames it reads (``decoding_radius``), so
that with all of a recording heard the landmarks equal ``generate``'s for it. Differences from ``generate``:
``sample`` is refused (its noise is drawn per call, so a track would jump at every chunk); the ``clip`` scope pools
the logits of the frames heard so far; a recording longer than the model's ``chunk_frames`` is one carried sequence,
not cross-faded windows whose BiGRU restarts.
"""

import torch

from lightning_modules.mdn import LandmarkMDN
from lightning_modules.mdn_decoding import decoding_radius
from lightning_modules.nets.mdn import phase_states


class LiveLandmarks:
    """One recording's live decoder: ``__call__`` takes the mel windows of the frames heard since the last call and
    returns the landmarks of the next frames (``mode`` ``max`` or ``mean``, ``smoothing`` the model's when None).
    It puts ``mdn`` in eval mode."""

    def __init__(self, mdn: LandmarkMDN, reference: torch.Tensor, mode: str = "max", smoothing: float | None = None):
        if mode == "sample":
            raise ValueError("Live decoding takes mode max or mean: a sample's noise is drawn per call.")
        self.mdn, self.mode = mdn.eval(), mode
        self.reference = reference.to(mdn.device, torch.float32)  # registered [68, 3]
        self.smoothing = mdn.hparams.smoothing if smoothing is None else smoothing
        self.stride = mdn.hparams.sfe_hparams["step_stride"]
        gru = mdn.sfe.gru
        self.forward_state = torch.zeros(self.stride, 1, gru.hidden_size, device=mdn.device)  # by frame % stride
        self.heard = torch.zeros(1, 0, gru.input_size, device=mdn.device)  # encoded frames not yet emitted
        self.emitted = 0
        self.past: dict[str, torch.Tensor] = {}  # mixtures of the last emitted frames, for smoothing and dips
        self.emitted_logits = torch.zeros(mdn.hparams.components, device=mdn.device)  # clip scope: their sum

    @torch.no_grad()
    def __call__(self, windows: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel windows ``[1, n, 20, 80]`` of the newly heard frames -> registered ``[frames, 68, 3]`` and relative
        pose ``[frames, 6]`` of the next ``frames`` frames, all frames heard after them as look-ahead."""
        mdn, sfe = self.mdn, self.mdn.sfe
        new = sfe.encoder(windows[0].to(mdn.device, torch.float32))[None]  # [1, n, C]
        encoded = torch.cat([self.heard, new], dim=1)  # [1, F, C]: the frames to emit, then the look-ahead
        if not 0 < frames <= encoded.shape[1]:
            raise ValueError(f"{frames} frames cannot be emitted from {encoded.shape[1]} heard.")
        first = self.emitted
        phases = (first + torch.arange(self.stride)) % self.stride  # the phase of frames first, first + 1, ...
        states = phase_states(sfe.gru, encoded, self.stride, self.forward_state[phases])  # [1, F, 2 * hidden]
        for frame in range(max(0, frames - self.stride), frames):  # each phase's last emitted frame
            self.forward_state[(first + frame) % self.stride] = states[:, frame, : sfe.gru.hidden_size]
        features = sfe.read_memories(states)
        mixture = mdn.head(features["content"], features["speaker"], mdn.normalise(self.reference)[None])
        window = {name: torch.cat([self.past.get(name, value[:, :0]), value], 1) for name, value in mixture.items()}
        if mdn.hparams.mixture_scope == "clip":
            pooled = (self.emitted_logits + mixture["logits"][0].sum(0)) / (first + encoded.shape[1])
            window["logits"] = pooled.expand_as(window["logits"])
            self.emitted_logits += mixture["logits"][0, :frames].sum(0)
        registered, pose = mdn.tracks(window, self.reference[None], self.mode, smoothing=self.smoothing)
        past = window["logits"].shape[1] - encoded.shape[1]  # emitted frames before the heard ones
        now = slice(past, past + frames)
        next_past = slice(max(0, past + frames - decoding_radius(self.smoothing)), past + frames)
        self.past = {name: value[:, next_past] for name, value in window.items()}
        self.heard, self.emitted = encoded[:, frames:], first + frames
        return registered[0, 0, now], pose[0, 0, now]
