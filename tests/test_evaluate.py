"""make evaluate: landmark metrics against known values, a folder of videos against itself, the split of the
shards per variant, and bad input ending with one sentence."""

import json
import shutil

import cv2
import numpy as np
import pytest

from datamodules.media import FPS, SAMPLE_RATE, read_clip, write_video
from experiments.evaluate import main
from experiments.evaluation.videos import landmark_metrics
from lightning_modules.sync_scoring import SYNCNET_NOT_COMPUTED
from lightning_modules.video_metrics import PSNR_CAP


def _face_track(frames: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(frames, 68, 3)).astype(np.float32)


def test_known_landmark_shift_gives_the_known_lmd():
    target = _face_track()
    shifted = target + np.array([0.3, 0.4, 5.0], np.float32)  # 0.5 in the image plane; depth is not counted
    values = landmark_metrics(shifted, target, np.ones(len(target), bool))
    assert values["lmd_mouth"] == pytest.approx(0.5, abs=1e-5)
    assert values["lmd_face"] == pytest.approx(0.5, abs=1e-5)
    assert values["lvd"] == pytest.approx(0.0, abs=1e-6)  # a constant shift does not move


def test_lvd_of_a_sequence_against_itself_is_zero():
    track = _face_track()
    values = landmark_metrics(track, track.copy(), np.ones(len(track), bool))
    assert values == {"lmd_mouth": 0.0, "lmd_face": 0.0, "lvd": 0.0}
    still = np.repeat(track[:1], len(track), 0)
    assert landmark_metrics(still, track, np.ones(len(track), bool))["lvd"] > 0


def test_videos_against_themselves(synthetic_corpus, tmp_path, capsys):
    videos = tmp_path / "videos"
    clip = sorted(synthetic_corpus.rglob("*.mp4"))[0]
    (videos / "a").mkdir(parents=True)
    shutil.copy(clip, videos / "a" / "clip.mp4")
    assert main(["--name", "self", "--videos", str(videos), "--truth", str(videos), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "self.json").read_text())
    metrics = report["metrics"]
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["psnr"] == PSNR_CAP
    assert metrics["lmd_mouth"] == 0.0 and metrics["lvd"] == 0.0
    assert metrics["mouth_sync_corr"] > 0.3 and abs(metrics["mouth_sync_offset"]) <= 1
    assert report["not_computed"]["lse_d"] == SYNCNET_NOT_COMPUTED
    table = (tmp_path / "self.md").read_text()
    assert "| LSE-D | not computed (needs SyncNet weights: --syncnet PATH)" in table

    frames, audio = read_clip(clip)
    blurred = tmp_path / "blurred"
    (blurred / "a").mkdir(parents=True)
    write_video(blurred / "a" / "clip.mp4", np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames]), audio)
    assert main(["--name", "blurred", "--videos", str(blurred), "--truth", str(videos), "--out", str(tmp_path)]) == 0
    soft = json.loads((tmp_path / "blurred.json").read_text())["metrics"]
    assert soft["cpbd"] < 0.5 * metrics["cpbd"], (soft["cpbd"], metrics["cpbd"])  # sharpness of the face crops
    assert soft["psnr"] < PSNR_CAP - 10 and soft["ssim"] < 0.95


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--videos", "{tmp}/none"], "is not a folder of videos"),
        (["--videos", "{tmp}"], "holds no video"),
        (["--videos", "{tmp}", "--syncnet", "{tmp}/syncnet_v2.model"], "does not exist"),
        (["--data", "{tmp}/no-shards", "--variant", "static"], "no-shards"),
        (["--data", "{tmp}", "--variant", "model", "--mdn", "{tmp}/mdn.ckpt"], ""),
    ],
)
def test_bad_input_ends_with_one_sentence(tmp_path, capsys, arguments, message):
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    assert main(["--name", "bad", "--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and error.count("\n") == 0 and "Traceback" not in error
    assert not (tmp_path / "out" / "bad.json").exists()


def test_a_video_without_a_face_is_named_in_one_sentence(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    grey = np.full((10, 64, 64, 3), 128, np.uint8)
    write_video(videos / "blank.mp4", grey, np.zeros(10 * SAMPLE_RATE // FPS, np.float32))
    assert main(["--name", "blank", "--out", str(tmp_path / "out"), "--videos", str(videos)]) == 2
    error = capsys.readouterr().err.strip()
    assert "No face was found in" in error and "blank.mp4" in error and error.count("\n") == 0


@pytest.mark.slow
def test_static_variant_over_the_test_split(synthetic_shards, tmp_path):
    arguments = ["--name", "static", "--data", str(synthetic_shards), "--variant", "static", "--limit", "1"]
    assert main([*arguments, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "static.json").read_text())
    metrics = report["metrics"]
    assert metrics["lmd_mouth"] > 0 and metrics["lvd"] > 0  # a face that does not talk misses the speech
    assert 0 < metrics["ssim"] < 1 and metrics["psnr"] < PSNR_CAP
    assert report["not_computed"]["diversity"].startswith("not computed")
