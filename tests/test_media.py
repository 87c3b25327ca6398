"""Decoding and encoding through imageio-ffmpeg's ffmpeg (the datamodules/media package), and its errors."""

import numpy as np
import pytest

from datamodules.media import MediaError, open_clip, probe, read_audio, read_video, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = np.zeros((50, 64, 96, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(50, dtype=np.uint8)[:, None, None] * 5
    audio = np.sin(np.linspace(0, 2000, 32000)).astype(np.float32) * 0.5
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", frames, audio)


def test_roundtrip_keeps_frames_rate_and_audio(clip):
    info = probe(clip)
    assert (info.fps, info.width, info.height, info.has_audio) == (25.0, 96, 64, True)
    frames = read_video(clip)
    assert frames.shape == (50, 64, 96, 3) and frames.dtype == np.uint8
    assert abs(int(frames[40, 10, 10, 0]) - 200) <= 3, "frames come back in order"
    audio = read_audio(clip)
    assert audio.dtype == np.float32 and abs(len(audio) - 32000) <= 160


def test_frames_are_resampled_to_the_requested_rate(clip):
    assert len(read_video(clip, fps=50)) == 100
    assert read_video(clip, size=(48, 32)).shape == (50, 32, 48, 3)


def test_bad_files_fail_with_one_sentence_naming_them(tmp_path, clip):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 500)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    silent = write_video(tmp_path / "video_only.mp4", np.zeros((10, 32, 32, 3), np.uint8))
    for path, reader, reason in [
        (tmp_path / "missing.mp4", read_video, "does not exist"),
        (corrupt, read_video, "not a readable media file"),
        (truncated, read_video, "not a readable media file"),
        (silent, read_audio, "has no audio track"),
    ]:
        with pytest.raises(MediaError, match=reason) as error:
            reader(path)
        assert str(path) in str(error.value) and str(error.value).count(". ") == 0


def test_writer_rejects_wrong_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((3, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "x.mp4", np.zeros((3, 31, 32, 3), np.uint8))


def test_streamed_frames_equal_the_whole_read_and_fail_like_it(clip, tmp_path):
    frames, audio = open_clip(clip)
    assert np.array_equal(np.stack(list(frames)), read_video(clip)) and frames.shape == (50, 64, 96, 3)
    assert np.array_equal(audio, read_audio(clip))
    assert np.array_equal(np.stack(list(frames)), read_video(clip)), "every pass decodes the same frames"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])
    with pytest.raises(MediaError, match=str(truncated)):
        frames, _ = open_clip(truncated)
        len(frames)
