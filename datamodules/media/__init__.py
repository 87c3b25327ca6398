"""Decode and encode talking-face media through the ffmpeg binary that imageio-ffmpeg ships.

Video comes out as RGB uint8 frames at a fixed frame rate (25 fps by the data contract, resampled when the
source differs) and audio as 16 kHz mono float32, whatever the container holds. No system ffmpeg, no
torchcodec. ``reading`` probes and decodes, ``writing`` encodes whole clips and frame streams, ``speech`` turns a
user's recording into the 16 kHz WAV that generation reads in pieces.
"""

from datamodules.media.reading import (
    FPS,
    SAMPLE_RATE,
    MediaError,
    MediaInfo,
    VideoFrames,
    non_finite_audio,
    open_clip,
    probe,
    read_audio,
    read_clip,
    read_video,
)
from datamodules.media.speech import MIN_SPEECH_SECONDS, SILENT_PEAK, Speech, decode_speech
from datamodules.media.writing import VideoStreamWriter, write_video

__all__ = [
    "FPS",
    "MIN_SPEECH_SECONDS",
    "SAMPLE_RATE",
    "SILENT_PEAK",
    "MediaError",
    "MediaInfo",
    "Speech",
    "VideoFrames",
    "VideoStreamWriter",
    "decode_speech",
    "non_finite_audio",
    "open_clip",
    "probe",
    "read_audio",
    "read_clip",
    "read_video",
    "write_video",
]
