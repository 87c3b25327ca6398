"""The embedded corpus generator (datamodules/synthetic/): layouts, decodability, speech and lips against their
ground truth, people and voices held out, determinism, bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import mediapipe as mp
import numpy as np
import pytest

from datamodules import synthetic
from datamodules.corpus import CorpusError, validation_speakers
from datamodules.media import FPS, SAMPLE_RATE, read_audio, read_video
from datamodules.synthetic import HELD_OUT_PERSON, HELD_OUT_VOICE, MARKER, generate_corpus, read_marker
from datamodules.synthetic.articulation import CONTROL_RATE, Style, articulate, viseme_segments
from datamodules.synthetic.engines import espeak_sentence
from datamodules.synthetic.faces import NOT_MIRRORED
from datamodules.synthetic.speakers import speaker_specs
from tests.conftest import SESSION_CORPUS

ROOT = Path(__file__).resolve().parents[1]
PER_FRAME_KEYS = ("mouth_opening", "lip_width", "head_pose", "visemes", "lips")
SIDECAR_KEYS = {"fps", "speaker", "text", "words", "phonemes", "voice", "pitch_hz", *PER_FRAME_KEYS}
VOWEL_LETTERS = set("æaɑɐʌɒɔɛeɜəɚᵻiɪuʊoɵ")
UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_CORNERS = 13, 14, (61, 291)


def clips_of(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("*.mp4"))


def sidecar(clip: Path) -> dict:
    return json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())


def sidecars(corpus: Path) -> dict[str, str]:
    return {path.relative_to(corpus).as_posix(): path.read_text() for path in sorted(corpus.rglob("*.truth.json"))}


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


@pytest.fixture(scope="module")
def mesh_measurements(synthetic_corpus) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Per clip, MediaPipe's inner-lip gap and lip width per frame (NaN where it finds no face), tracking mode.

    With the refined lip landmarks: the plain mesh reads a smiling closed mouth (the astronaut's) as 5 px open.
    """
    measured = {}
    for clip in clips_of(synthetic_corpus):
        gaps, widths = [], []
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True) as mesh:
            for frame in read_video(clip):
                found = mesh.process(frame).multi_face_landmarks
                if not found:
                    gaps.append(np.nan)
                    widths.append(np.nan)
                    continue
                height, width = frame.shape[:2]
                points = np.array([(p.x * width, p.y * height) for p in found[0].landmark])  # [468, 2]
                gaps.append(np.linalg.norm(points[LOWER_INNER_LIP] - points[UPPER_INNER_LIP]))
                widths.append(np.linalg.norm(points[MOUTH_CORNERS[1]] - points[MOUTH_CORNERS[0]]))
        measured[clip] = (np.array(gaps), np.array(widths))
    return measured


def test_lrs3_layout_splits_by_speaker_and_marks_completion(synthetic_corpus):
    clips = clips_of(synthetic_corpus)
    assert len(clips) == SESSION_CORPUS["speakers"] * SESSION_CORPUS["clips"]
    speakers_by_split: dict[str, set[str]] = {}
    for clip in clips:
        relative = clip.relative_to(synthetic_corpus).as_posix()
        assert re.fullmatch(r"(pretrain|trainval|test)/[A-Za-z0-9_-]{11}/\d{5}\.mp4", relative), relative
        split, video_id = clip.relative_to(synthetic_corpus).parts[:2]
        speakers_by_split.setdefault(split, set()).add(video_id)
        assert sidecar(clip)["speaker"] == video_id
        transcript = clip.with_suffix(".txt").read_text().splitlines()
        assert transcript[0] == f"Text:  {sidecar(clip)['text'].upper()}" and len(transcript[0].split()) > 1
        assert transcript[3] == "WORD START END ASDSCORE" and len(transcript) == 4 + len(sidecar(clip)["words"])
    assert len(speakers_by_split["test"]) >= 2
    assert speakers_by_split.keys() == {"pretrain", "trainval", "test"}
    all_speakers = [speaker for speakers in speakers_by_split.values() for speaker in speakers]
    assert len(all_speakers) == len(set(all_speakers)) == SESSION_CORPUS["speakers"], "each speaker in one split"
    marker = read_marker(synthetic_corpus)
    assert marker["arguments"] == {**SESSION_CORPUS, "version": synthetic.GENERATOR_VERSION}
    assert marker["clips"] == [clip.relative_to(synthetic_corpus).as_posix() for clip in clips]


def test_the_test_split_holds_out_a_person_and_a_voice(synthetic_corpus):
    speakers = read_marker(synthetic_corpus)["speakers"]
    testing = {key: value for key, value in speakers.items() if value["split"] == "test"}
    training = {key: value for key, value in speakers.items() if value["split"] != "test"}
    assert {value["photo"] for value in testing.values()} == {HELD_OUT_PERSON}
    assert HELD_OUT_PERSON not in {value["photo"] for value in training.values()}
    assert len({value["photo"] for value in training.values()}) == 2, "the other two people both train"
    held_out_voice = f"espeak:{HELD_OUT_VOICE}"
    assert held_out_voice in {value["voice"] for value in testing.values()}
    assert held_out_voice not in {value["voice"] for value in training.values()}
    assert read_marker(synthetic_corpus)["held_out"] == {"person": HELD_OUT_PERSON, "voice": held_out_voice}
    for clip in clips_of(synthetic_corpus):  # a speaker's face and voice are the same in all its clips
        truth = sidecar(clip)
        assert f"{truth['voice']['engine']}:{truth['voice']['variant']}" == speakers[truth["speaker"]]["voice"]
        assert truth["photo"] == speakers[truth["speaker"]]["photo"]


@pytest.mark.parametrize("layout", ["lrs3", "voxceleb2"])
@pytest.mark.parametrize("speakers", [8, 12, 40])
def test_validation_speakers_are_new_voices_of_different_training_people(layout, speakers):
    """Preprocessing holds out the speakers of lowest hash for validation; the generator hands out the people in
    that order, so the validation split never holds a single person's voices only, and in the default corpus
    each training person keeps two training speakers, one with each engine."""
    specs = speaker_specs(0, speakers, layout)
    non_test = {spec.speaker_id: spec for spec in specs if spec.split != "test"}
    validation = validation_speakers(set(non_test), val_fraction=0.1)
    assert len({non_test[speaker].photo for speaker in validation}) == 2, "validation holds both training people"
    training = [spec for speaker, spec in non_test.items() if speaker not in validation]
    for person in {spec.photo for spec in non_test.values()}:
        engines = [spec.voice.engine for spec in training if spec.photo == person]
        assert len(engines) >= 2, f"{person} has {len(engines)} training speakers"
        if speakers == 8:
            assert sorted(engines) == ["espeak", "piper"], person


@pytest.mark.parametrize("layout", ["lrs3", "voxceleb2"])
def test_faces_seen_from_the_side_are_never_mirrored_nor_stretched_wider(layout):
    """MediaPipe loses the cameraman's lips when his three-quarter view is mirrored or stretched wider, so his
    speakers keep his own orientation and an aspect of at most 1; the frontal people take both ways."""
    specs = speaker_specs(0, 40, layout)
    side = [spec for spec in specs if spec.photo in NOT_MIRRORED]
    frontal = [spec for spec in specs if spec.photo not in NOT_MIRRORED]
    assert side and all(not spec.mirror and spec.aspect <= 1.0 for spec in side)
    assert any(spec.mirror for spec in frontal) and any(spec.aspect > 1.0 for spec in frontal)


def test_clips_decode_with_the_media_reader_as_h264_and_16khz_mono_aac(synthetic_corpus):
    seconds, size = SESSION_CORPUS["seconds"], SESSION_CORPUS["size"]
    for clip in clips_of(synthetic_corpus):
        frames = read_video(clip)
        assert abs(len(frames) - FPS * seconds) <= 1 and frames.shape[1:] == (size, size, 3), clip
        audio = read_audio(clip)
        assert abs(len(audio) - SAMPLE_RATE * seconds) <= SAMPLE_RATE // FPS, clip
        assert 0.05 < np.abs(audio).max() <= 1.0, "speech at a sane level"
        header = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(clip)], capture_output=True)
        streams = header.stderr.decode()
        assert re.search(r"Video: h264.* 25 fps", streams) and re.search(r"Audio: aac.* 16000 Hz, mono", streams)
        truth = sidecar(clip)
        assert SIDECAR_KEYS <= truth.keys() and truth["fps"] == FPS
        for key in PER_FRAME_KEYS:
            assert len(truth[key]) == len(frames), key
        assert np.array(truth["head_pose"]).shape == (len(frames), 4)
        assert np.array(truth["lips"]).shape == (len(frames), 3)
        phonemes = truth["phonemes"]  # tile the clip, in order
        assert phonemes[0][1] == 0.0 and abs(phonemes[-1][2] - seconds) < 1e-3
        assert all(abs(a[2] - b[1]) < 1e-3 and a[1] < a[2] for a, b in zip(phonemes[:-1], phonemes[1:], strict=True))
        assert [word for word, _, _ in truth["words"]] == truth["text"].split()


def test_mediapipe_finds_the_face_in_nearly_every_frame(mesh_measurements):
    for clip, (gaps, _) in mesh_measurements.items():
        assert np.isfinite(gaps).mean() >= 0.95, clip


def test_mediapipe_mouth_opening_follows_the_sidecar(mesh_measurements):
    width_agreement = []
    for clip, (gaps, widths) in mesh_measurements.items():
        truth = sidecar(clip)
        opening, found = np.array(truth["mouth_opening"]), np.isfinite(gaps)
        assert opening.max() >= 5.0 and opening.min() <= 3.0, f"{clip}: the mouth opens and closes"
        assert pearson(gaps[found], opening[found]) >= 0.8, clip
        width_agreement.append(pearson(widths[found], np.array(truth["lip_width"])[found]))
    assert np.median(width_agreement) >= 0.6, "lip spread and rounding are visible"


def test_lips_close_in_every_bilabial_and_open_in_open_vowels(mesh_measurements):
    """MediaPipe's inner-lip gap at frames inside p, b, m is below 20% of its value at open-vowel frames."""
    tested = 0
    for clip, (gaps, _) in mesh_measurements.items():
        visemes = np.array(sidecar(clip)["visemes"])
        closed, opened = (
            gaps[(visemes == "bilabial") & np.isfinite(gaps)],
            gaps[(visemes == "open") & np.isfinite(gaps)],
        )
        if len(closed) and len(opened):
            tested += 1
            assert np.median(closed) < 0.2 * np.median(opened), f"{clip}: {np.median(closed)} vs {np.median(opened)}"
    assert tested >= len(mesh_measurements) // 2, "most clips have bilabial and open-vowel frames"


def frame_energy(audio: np.ndarray, start: float, end: float) -> float:
    """RMS of ``audio`` between two times (seconds)."""
    return float(np.sqrt(np.mean(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)] ** 2)))


def test_sidecar_phoneme_timing_matches_the_audio(synthetic_corpus):
    """Energy is low inside the sidecar's silences and high inside its vowels."""
    for clip in clips_of(synthetic_corpus):
        audio, phonemes = read_audio(clip), sidecar(clip)["phonemes"]
        silences = [
            frame_energy(audio, start + 0.03, end - 0.03)
            for symbol, start, end in phonemes
            if not symbol and end - start > 0.1
        ]
        vowels = [
            frame_energy(audio, start + 0.01, end - 0.01)
            for symbol, start, end in phonemes
            if symbol.lstrip("ˈˌ")[:1] in VOWEL_LETTERS and end - start > 0.05
        ]
        assert silences and len(vowels) >= 3, clip
        assert np.percentile(vowels, 10) > 5 * np.percentile(silences, 90), f"{clip}: {vowels} vs {silences}"


def cepstral_pitch(audio: np.ndarray) -> float:
    """Median F0 (Hz) of the loud 40 ms frames by the real cepstrum's peak (another method than the generator's)."""
    frame = int(0.04 * SAMPLE_RATE)
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[:: frame // 2]
    frames = frames[np.sqrt((frames**2).mean(1)) > 0.1 * np.abs(audio).max()]
    cepstrum = np.fft.irfft(np.log(np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) + 1e-6), axis=1)
    low, high = int(SAMPLE_RATE / 400), int(SAMPLE_RATE / 60)
    return float(np.median(SAMPLE_RATE / (low + np.argmax(cepstrum[:, low:high], axis=1))))


def test_speakers_differ_in_pitch_as_stated(synthetic_corpus):
    stated = {clip: sidecar(clip)["pitch_hz"] for clip in clips_of(synthetic_corpus)}
    low, high = min(stated, key=stated.get), max(stated, key=stated.get)
    assert sidecar(low)["speaker"] != sidecar(high)["speaker"] and stated[high] > 1.3 * stated[low]
    measured = {clip: cepstral_pitch(read_audio(clip)) for clip in (low, high)}
    for clip in (low, high):
        assert abs(measured[clip] / stated[clip] - 1) < 0.15, (
            f"{clip}: stated {stated[clip]}, measured {measured[clip]}"
        )


def test_bilabials_close_the_lips_fully_and_the_lips_anticipate_the_next_sound():
    phonemes = [("", 0.0, 0.3), ("ˈɑ", 0.3, 0.5), ("m", 0.5, 0.56), ("ɑ", 0.56, 0.8), ("", 0.8, 1.2), ("u", 1.2, 1.5)]
    tracks = articulate(phonemes, 1.5, Style(1.0, 1.0, 0.08), np.random.default_rng(0))
    at = lambda seconds: int(seconds * CONTROL_RATE)  # noqa: E731
    assert tracks.opening[at(0.5) : at(0.56)].max() == 0.0, "a short m between open vowels still closes the lips"
    assert tracks.opening[at(0.4)] > 0.7 and tracks.opening[at(0.7)] > 0.7
    assert tracks.spread[at(1.185)] < -0.2, "rounding starts before the u is heard"
    assert tracks.opening[at(0.05)] < 0.01, "silence rests the mouth closed"
    assert tracks.stresses == [0.3]
    assert [viseme for viseme, _, _ in viseme_segments([("tʃ", 0.0, 0.1), ("h", 0.1, 0.2), ("ˈaʊ", 0.2, 0.4)])] == [
        "alveolar",
        "postalveolar",
        "open",
        "open",
        "round",
    ]


def test_a_parted_rest_mouth_stays_apart_in_silence_and_still_closes_on_bilabials():
    phonemes = [("", 0.0, 0.3), ("ˈɑ", 0.3, 0.5), ("m", 0.5, 0.56), ("ɑ", 0.56, 0.8), ("", 0.8, 1.2)]
    style = Style(1.0, 1.0, 0.08, rest_opening=0.2, rest_spread=0.4)
    tracks = articulate(phonemes, 1.2, style, np.random.default_rng(0))
    at = lambda seconds: int(seconds * CONTROL_RATE)  # noqa: E731
    assert tracks.opening[at(0.05)] > 0.15 and tracks.spread[at(0.05)] > 0.3, "silence rests parted and smiling"
    assert tracks.opening[at(0.5) : at(0.56)].max() == 0.0, "the m still closes the lips"


def test_a_share_of_parted_speakers_changes_nothing_else_of_them_and_the_default_corpus_has_none():
    closed, parted = speaker_specs(0, 40, "lrs3"), speaker_specs(0, 40, "lrs3", parted=0.5)
    assert all(spec.style.rest_opening == 0.0 == spec.style.rest_spread for spec in closed)
    resting = [spec for spec in parted if spec.style.rest_opening > 0]
    assert 10 <= len(resting) <= 30 and all(spec.style.rest_spread > 0 for spec in resting)
    for before, after in zip(closed, parted, strict=True):
        assert (before.voice, before.photo, before.split) == (after.voice, after.photo, after.split)
        assert before.style.opening_gain == after.style.opening_gain


def test_one_seed_gives_identical_sidecars_and_audio_whatever_the_workers_and_another_seed_differs(tmp_path):
    tiny = {"speakers": 2, "clips": 1, "seconds": 1.0, "size": 128, "progress": False}
    first = generate_corpus(tmp_path / "a", seed=3, workers=1, **tiny)
    again = generate_corpus(tmp_path / "b", seed=3, workers=2, **tiny)
    other = generate_corpus(tmp_path / "c", seed=4, workers=1, **tiny)
    assert sidecars(first) == sidecars(again) and len(sidecars(first)) == 2
    assert (first / MARKER).read_text() == (again / MARKER).read_text()
    for clip in clips_of(first):  # the speech too: piper's sampling noise is off, espeak-ng's is seeded
        assert np.array_equal(read_audio(clip), read_audio(again / clip.relative_to(first)))
    first_openings = [json.loads(text)["mouth_opening"] for text in sidecars(first).values()]
    other_openings = [json.loads(text)["mouth_opening"] for text in sidecars(other).values()]
    assert first_openings != other_openings


def test_espeak_says_a_sentence_the_same_whatever_it_said_before():
    """espeak-ng keeps state between syntheses (random numbers, its wave generator): each sentence is said by a
    freshly loaded library with seeded random numbers, so a pool's order of work cannot change the audio."""
    sentence = "The birch canoe slid on the smooth planks."
    first = espeak_sentence(sentence, "en-us+f2", 37, 160)[0]
    espeak_sentence(sentence, HELD_OUT_VOICE, 31, 160)
    again = espeak_sentence(sentence, "en-us+f2", 37, 160)[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, espeak_sentence(sentence, "en-us+f2", 60, 160)[0]), "the pitch is heard"


def test_voxceleb2_layout(tmp_path):
    corpus = generate_corpus(tmp_path / "vox", "voxceleb2", speakers=2, clips=4, seconds=1.0, size=128, progress=False)
    relatives = [clip.relative_to(corpus).as_posix() for clip in clips_of(corpus)]
    assert len(relatives) == 8
    for relative in relatives:
        assert re.fullmatch(r"(dev|test)/mp4/id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.mp4", relative), relative
        assert sidecar(corpus / relative)["speaker"] == relative.split("/")[2]
    assert {relative.split("/")[0] for relative in relatives} == {"dev", "test"}
    assert not list(corpus.rglob("*.txt")), "VoxCeleb2 has no transcripts"


def test_a_complete_corpus_is_reused_and_other_arguments_are_refused(synthetic_corpus):
    before = {path: path.stat().st_mtime_ns for path in synthetic_corpus.rglob("*")}
    assert generate_corpus(synthetic_corpus, **SESSION_CORPUS, progress=False) == synthetic_corpus
    assert {path: path.stat().st_mtime_ns for path in synthetic_corpus.rglob("*")} == before
    with pytest.raises(CorpusError, match=r"other arguments: clips 2 \(asked 3\).*--force"):
        generate_corpus(synthetic_corpus, **{**SESSION_CORPUS, "clips": 3}, progress=False)


def test_a_corpus_of_an_older_generator_version_is_rebuilt(tmp_path):
    tiny = {"speakers": 1, "clips": 1, "seconds": 1.0, "size": 128, "progress": False}
    old = tmp_path / "corpus"
    old.mkdir()
    arguments = {"layout": "lrs3", **{key: tiny[key] for key in ("speakers", "clips", "seconds")}, "seed": 0}
    marker = {"generator": "datamodules.synthetic", "arguments": {**arguments, "size": 128, "version": 1}}
    (old / MARKER).write_text(json.dumps(marker))
    generate_corpus(old, **tiny)
    assert read_marker(old)["arguments"]["version"] == synthetic.GENERATOR_VERSION and clips_of(old)


def test_a_folder_that_is_not_a_generated_corpus_is_never_touched(tmp_path):
    (tmp_path / "notes.txt").write_text("someone's data")
    with pytest.raises(CorpusError, match="is not a generated corpus"):
        generate_corpus(tmp_path, speakers=1, clips=1, seconds=1.0, size=128, force=True, progress=False)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_an_interrupted_run_leaves_nothing_that_looks_like_a_corpus(tmp_path, monkeypatch):
    written = []

    def fail_on_second_clip(job, root):
        if written:
            raise OSError("No space left on device")
        written.append(job)
        return job.relative_path

    monkeypatch.setattr(synthetic.build, "write_clip", fail_on_second_clip)
    with pytest.raises(OSError):
        generate_corpus(tmp_path / "corpus", speakers=2, clips=1, seconds=1.0, size=128, workers=1, progress=False)
    assert written and list(tmp_path.iterdir()) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "datamodules.synthetic", "--seconds", "1", "--size", "128", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--layout", "lrs2"], "invalid choice: 'lrs2'"),
        (["--clips", "0"], "at least 1 clip per speaker"),
        (["--speakers", "0"], "at least 1 speaker"),
        (["--size", "255"], "even number of pixels"),
    ],
    ids=["unknown-layout", "zero-clips", "zero-speakers", "odd-size"],
)
def test_bad_arguments_end_with_one_sentence_and_no_corpus(tmp_path, arguments, expected):
    result = run_cli("--out", str(tmp_path / "corpus"), *arguments)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_ends_with_one_sentence_and_no_corpus(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("--out", str(blocker / "corpus"), "--speakers", "1", "--clips", "1")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: Cannot write the corpus to {blocker / 'corpus'}: {blocker} is a file, not a folder."
    )
    assert list(tmp_path.iterdir()) == [blocker]
