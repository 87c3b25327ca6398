"""The Speech Feature Extractor: the audio branch that stage 1 pretrains and stage 2 reuses."""

import torch
from einops import rearrange
from torch import nn

from lightning_modules.nets.audio_encoder import AudioEncoder
from lightning_modules.nets.memory import LinearReadout, MemoryBank


class SpeechFeatureExtractor(nn.Module):
    """Mel windows ``[B, T, 20, 80]`` -> content and speaker features ``[B, T, feature_dim]``.

    Audio encoder per step, a one-layer bidirectional GRU over the steps, then two memory banks (content
    and speaker) read from the GRU state; ``memory=False`` replaces both reads by linear projections.
    """

    def __init__(
        self,
        audio_dim: int = 256,
        audio_width: int = 32,
        gru_hidden: int = 512,
        feature_dim: int = 128,
        memory: bool = True,
        memory_slots: int = 512,
        memory_hidden: int = 512,
        window_frames: int = 20,
        mel_bins: int = 80,
    ):
        super().__init__()
        self.encoder = AudioEncoder(audio_dim, audio_width, window_frames, mel_bins)
        self.gru = nn.GRU(audio_dim, gru_hidden, batch_first=True, bidirectional=True)
        if memory:
            self.content_memory = MemoryBank(2 * gru_hidden, memory_slots, feature_dim, memory_hidden)
            self.speaker_memory = MemoryBank(2 * gru_hidden, memory_slots, feature_dim, memory_hidden)
        else:
            self.content_memory = LinearReadout(2 * gru_hidden, feature_dim)
            self.speaker_memory = LinearReadout(2 * gru_hidden, feature_dim)

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``[B, T, 20, 80]`` -> ``content``, ``speaker`` ``[B, T, D]``; ``*_addressing`` ``[B, T, K]`` or None."""
        batch = audio.shape[0]
        encoded = self.encoder(rearrange(audio, "b t h w -> (b t) h w"))  # [B*T, audio_dim]
        encoded = rearrange(encoded, "(b t) c -> b t c", b=batch)
        states, _ = self.gru(encoded)  # [B, T, 2 * gru_hidden]
        return self.read_memories(states)

    def read_memories(self, states: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """GRU states ``[B, T, 2 * gru_hidden]`` -> ``content``, ``speaker`` ``[B, T, D]`` and their addressing."""
        content, content_addressing = self.content_memory(states)
        speaker, speaker_addressing = self.speaker_memory(states)
        return {
            "content": content,
            "speaker": speaker,
            "content_addressing": content_addressing,
            "speaker_addressing": speaker_addressing,
        }
