"""Writing H.264 + AAC videos: a whole clip at once (the embedded corpus, pictures) or frame by frame (generation)."""

import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soundfile

from datamodules.media.reading import FPS, SAMPLE_RATE, MediaError, last_error_line

# Generation's encoding. x264's defaults (CRF 18) drop the small high-frequency residuals of a face that moves by
# fractions of a pixel, so each predicted frame is a little softer than the last: on a 512x512 portrait the video
# kept 0.8 of its frames' upper-face sharpness. The film-grain tuning (smaller dead zones, psychovisual weighting
# of detail) at CRF 16 keeps 0.95 of it, for about twice the bitrate (about 0.5 Mbit/s at 512x512).
STREAM_CRF = 16
STREAM_TUNE = "grain"


def write_video(
    path: str | Path,
    frames: np.ndarray,
    audio: np.ndarray | None = None,
    fps: float = FPS,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
) -> Path:
    """Writes ``frames`` ``[T, H, W, 3]`` uint8 as H.264 (yuv420p) with ``audio`` ``[N]`` float32 as AAC mono.

    The file appears only when complete (written beside it, then renamed), so an interrupted write never
    leaves a truncated clip under the final name.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs even frame sides, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    with tempfile.TemporaryDirectory() as scratch:
        audio_path = None
        if audio is not None:
            audio_path = str(Path(scratch) / "audio.wav")
            soundfile.write(audio_path, np.asarray(audio, np.float32), sample_rate, subtype="FLOAT")
        encoder_flags = ["-crf", str(crf), "-preset", "veryfast"]
        if audio_path:
            encoder_flags += ["-ar", str(sample_rate), "-ac", "1"]
        writer = imageio_ffmpeg.write_frames(
            str(partial),
            (width, height),
            fps=fps,
            codec="libx264",
            quality=None,
            macro_block_size=2,
            audio_path=audio_path,
            audio_codec="aac" if audio_path else None,
            output_params=encoder_flags,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    partial.replace(path)
    return path


class VideoStreamWriter:
    """Writes RGB uint8 frames ``[H, W, 3]`` one at a time as H.264 (yuv420p, 25 fps) through a streaming ffmpeg,
    muxing ``audio`` (any file ffmpeg reads) as AAC, so that no more than one frame is held.

    The video is written to a hidden partial file beside ``path`` and renamed to ``path`` by :meth:`close`;
    :meth:`abort` (or an exception inside a ``with`` block) removes it, so a failed run leaves no file behind.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        audio: str | Path | None = None,
        fps: float = FPS,
        crf: int = STREAM_CRF,
        preset: str = "veryfast",
        tune: str | None = STREAM_TUNE,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even frame sides, got {width}x{height}")
        self.path = Path(path)
        self.size = (height, width)
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=self.path.parent, prefix=f".{self.path.stem}.partial-", suffix=self.path.suffix, delete=False
        ) as placeholder:
            self.partial = Path(placeholder.name)
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo",
                   "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]  # fmt: skip
        if audio is not None:
            command += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", preset,
                    *(["-tune", tune] if tune else []), "-movflags", "+faststart", "-f", "mp4",
                    str(self.partial)]  # fmt: skip
        try:  # no ``with`` block holds the writer yet: an interruption here (Ctrl-C, SIGTERM) removes the placeholder
            self.partial.chmod(0o644)  # a temporary file is private; the video is not
            self._log = tempfile.TemporaryFile()
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
            )
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise

    def write(self, frame: np.ndarray) -> None:
        """Sends one RGB uint8 frame ``[H, W, 3]`` to the encoder."""
        if frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frames must be {(*self.size, 3)} uint8, got {frame.shape} {frame.dtype}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError as error:
            raise MediaError(f"ffmpeg stopped while writing {self.path} ({self._error()}).") from error
        self.frames += 1

    def _error(self) -> str:
        self._log.seek(0)
        return last_error_line(self._log.read())

    def close(self) -> Path:
        """Finishes the file and moves it to ``path``; raises MediaError (and removes it) if ffmpeg failed."""
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        code = self._process.wait()
        if code != 0 or self.frames == 0:
            reason = self._error() if code != 0 else "no frames were written"
            self.abort()
            raise MediaError(f"{self.path} could not be written ({reason}).")
        self._log.close()
        self.partial.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Stops ffmpeg and removes the partial file."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        self._log.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "VideoStreamWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
