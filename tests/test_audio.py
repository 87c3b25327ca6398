"""Mel features and their alignment with video frames (datamodules/audio.py), through a real mp4 round trip."""

import numpy as np
import pytest

from datamodules.audio import MELS_PER_FRAME, audio_windows, mel_spectrogram
from datamodules.media import read_audio, read_video, write_video


def test_mel_has_four_frames_per_video_frame_in_unit_range():
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    mel = mel_spectrogram(audio, frames=25)
    assert mel.shape == (100, 80) and mel.dtype == np.float32
    assert 0.0 <= mel.min() and mel.max() <= 1.0 and mel.std() > 0.01
    assert mel_spectrogram(audio[:9000], frames=25).shape == (100, 80), "short audio is padded to the video"


@pytest.mark.parametrize("click_frame", [7, 30, 61])
def test_click_at_a_video_frame_peaks_in_its_mel_frames(tmp_path, click_frame):
    frames = np.full((75, 64, 64, 3), 90, np.uint8)
    audio = np.zeros(3 * 16000, np.float32)
    centre = int((click_frame + 0.5) * 640)  # the middle of video frame t at 25 fps
    audio[centre - 16 : centre + 16] = np.hanning(32) * 0.9
    clip = write_video(tmp_path / "click.mp4", frames, audio)
    decoded_audio, decoded_frames = read_audio(clip), read_video(clip)
    mel = mel_spectrogram(decoded_audio, len(decoded_frames))
    loudest = int(np.argmax(mel.sum(1)))
    assert MELS_PER_FRAME * click_frame <= loudest < MELS_PER_FRAME * (click_frame + 1)


def test_audio_window_is_centred_with_repeated_edges():
    mel = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 80), np.float32)  # 10 video frames
    windows = audio_windows(mel, np.array([0, 5, 9]))
    assert windows.shape == (3, 20, 80)
    assert windows[1, :, 0].tolist() == list(range(12, 32)), "frame 5 owns mel 20..23, its window is 12..31"
    assert windows[0, :8, 0].tolist() == [0] * 8 and windows[2, -8:, 0].tolist() == [39] * 8
