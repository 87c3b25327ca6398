"""Reading media: the container's header, video frames (all at once or streamed) and audio, through ffmpeg."""

import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

FPS = 25
SAMPLE_RATE = 16_000


class MediaError(ValueError):
    """A media file that cannot be used; the message is one sentence naming the file."""


@dataclass(frozen=True)
class MediaInfo:
    """What the container says about a file, before decoding it."""

    duration: float  # seconds; 0 when the container does not say
    fps: float  # of the first video stream; 0 without video
    width: int
    height: int
    has_video: bool
    has_audio: bool


def run_ffmpeg(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs the shipped ffmpeg with ``args`` (no banner, no stdin unless given); its result, never raising."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    return subprocess.run(command, input=stdin, capture_output=True, check=False)


def last_error_line(stderr: bytes) -> str:
    """The last non-empty line of ffmpeg's ``stderr``: the reason it gives for failing."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"


def probe(path: str | Path) -> MediaInfo:
    """Reads the container header of ``path``; raises MediaError when it is missing or not media."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path} is a folder, not a media file.")
    if not path.is_file():
        raise MediaError(f"{path} does not exist.")
    header = run_ffmpeg("-i", str(path)).stderr.decode(errors="replace")
    streams = [line for line in header.splitlines() if re.match(r"\s*Stream #", line)]
    if not streams:
        reason = "no streams" if "Invalid data" not in header else "invalid data"
        raise MediaError(f"{path} is not a readable media file ({reason}; corrupt or truncated?).")
    video = next((line for line in streams if "Video:" in line), None)
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", header)
    seconds = 0.0
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    fps, width, height = 0.0, 0, 0
    if video:
        size = re.search(r", (\d{2,5})x(\d{2,5})", video)
        rate = re.search(r", ([\d.]+) (?:fps|tbr)", video)
        width, height = (int(size.group(1)), int(size.group(2))) if size else (0, 0)
        fps = float(rate.group(1)) if rate else 0.0
        rotation = re.search(r"rotation of (-?[\d.]+) degrees", header)
        if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
            width, height = height, width  # ffmpeg turns the frames upright when it decodes them
    has_audio = any("Audio:" in line for line in streams)
    return MediaInfo(seconds, fps, width, height, video is not None, has_audio)


def _video(path: Path, info: MediaInfo, fps: float, size: tuple[int, int] | None) -> np.ndarray:
    """All frames in one read, without a per-frame copy: ``[T, H, W, 3]`` uint8 (read-only)."""
    if not info.has_video:
        raise MediaError(f"{path} has no video stream.")
    width, height = size or (info.width, info.height)
    scale = f",scale={width}:{height}" if size else ""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
               "-vf", f"fps={fps}{scale}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    raw = subprocess.run(command, capture_output=True, check=False).stdout
    frame_bytes = width * height * 3
    if not raw:
        raise MediaError(f"{path} has a video stream but no frame decodes; the file is corrupt or truncated.")
    if len(raw) % frame_bytes:
        raise MediaError(f"{path} ends inside a frame; the file is truncated.")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


class VideoFrames:
    """The frames of a video, decoded while they are read: each pass over it streams ``[H, W, 3]`` uint8 frames
    from its own ffmpeg process, so memory holds one frame, not the clip (a 60 s 1080p clip is 9 GB as raw RGB).
    ``len`` and ``shape`` (``[T, H, W, 3]``) are known after the first full pass (``len`` decodes one if needed).
    Raises MediaError, naming the file, when no frame decodes or the stream ends inside a frame."""

    def __init__(self, path: Path, info: MediaInfo, fps: float = FPS):
        if not info.has_video:
            raise MediaError(f"{path} has no video stream.")
        self.path, self.fps = path, fps
        self.height, self.width = info.height, info.width
        self._count: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        frame_bytes = self.width * self.height * 3
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(self.path), "-map", "0:v:0",
                   "-vf", f"fps={self.fps}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, bufsize=frame_bytes)
            count = 0
            try:
                while chunk := process.stdout.read(frame_bytes):
                    if len(chunk) < frame_bytes:
                        raise MediaError(f"{self.path} ends inside a frame; the file is truncated.")
                    count += 1
                    yield np.frombuffer(chunk, np.uint8).reshape(self.height, self.width, 3)
            finally:
                process.stdout.close()
                process.kill()
                process.wait()
        if not count:
            raise MediaError(f"{self.path} has a video stream but no frame decodes; the file is corrupt or truncated.")
        self._count = count

    def __len__(self) -> int:
        if self._count is None:
            for _ in self:
                pass
        return self._count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.height, self.width, 3


def non_finite_audio(path: str | Path, count: int, first: int, sample_rate: int = SAMPLE_RATE) -> str:
    """The sentence for audio of ``path`` that holds ``count`` NaN or infinite samples, the first at ``first``."""
    return (
        f"{path} holds {count} non-finite audio samples (NaN or infinite, the first at {first / sample_rate:.2f} s): "
        "the recording is damaged; export it again."
    )


def _audio(path: Path, info: MediaInfo, sample_rate: int) -> np.ndarray:
    if not info.has_audio:
        raise MediaError(f"{path} has no audio track.")
    result = run_ffmpeg("-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
                     "-f", "f32le", "-")  # fmt: skip
    if result.returncode != 0:
        raise MediaError(f"{path}: the audio does not decode ({last_error_line(result.stderr)}).")
    return np.frombuffer(result.stdout, np.float32).copy()


def read_video(path: str | Path, fps: float = FPS, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of ``path`` at ``fps``: ``[T, H, W, 3]`` uint8. Raises MediaError when none decode."""
    return _video(Path(path), probe(path), fps, size)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of ``path`` (any codec) as mono float32 ``[N]`` at ``sample_rate``."""
    return _audio(Path(path), probe(path), sample_rate)


def read_clip(path: str | Path, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T, H, W, 3]`` and audio ``[N]`` of a talking-face clip, reading its header once."""
    path = Path(path)
    info = probe(path)
    audio = _audio(path, info, sample_rate)
    return _video(path, info, fps, None), audio


def open_clip(path: str | Path, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> tuple[VideoFrames, np.ndarray]:
    """Like :func:`read_clip`, with frames that decode as they are read (:class:`VideoFrames`): for clips of any
    length and size in bounded memory."""
    path = Path(path)
    info = probe(path)
    audio = _audio(path, info, sample_rate)
    return VideoFrames(path, info, fps), audio
