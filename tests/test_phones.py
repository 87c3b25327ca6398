"""The offline phone aligner (pocketsphinx's bundled English model) against the embedded corpus's sidecars."""

import json
import shutil

import numpy as np
import pytest

from datamodules.media import SAMPLE_RATE, read_audio
from experiments.evaluation.phones import AlignmentError, align_phones, boundary_error, transcript_words


def _clips(corpus):
    for clip in sorted(corpus.rglob("*.mp4")):
        yield read_audio(clip), json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())


def test_forced_alignment_matches_the_sidecars_within_40_ms(synthetic_corpus):
    errors = []
    for audio, truth in _clips(synthetic_corpus):
        phones = align_phones(audio, truth["text"])
        assert phones[0][1] == 0.0 and all(a[2] == b[1] for a, b in zip(phones, phones[1:], strict=False))
        assert abs(phones[-1][2] - len(audio) / SAMPLE_RATE) < 0.05
        errors.append(boundary_error(phones, [tuple(phone) for phone in truth["phonemes"]]))
    assert np.mean(errors) < 0.04
    assert max(errors) < 0.05


def test_phone_recognition_without_a_transcript_finds_the_phones(synthetic_corpus):
    errors = []
    for audio, truth in _clips(synthetic_corpus):
        phones = align_phones(audio)
        assert sum(1 for phone in phones if phone[0]) >= 10
        errors.append(boundary_error(phones, [tuple(phone) for phone in truth["phonemes"]]))
    assert np.mean(errors) < 0.08


def test_boundary_error_of_a_shifted_alignment_is_the_shift():
    reference = [("", 0.0, 0.1), ("ˈæ", 0.1, 0.3), ("m", 0.3, 0.4), ("", 0.4, 0.6)]
    shifted = [(phone, start + 0.02, end + 0.02) for phone, start, end in reference]
    assert boundary_error(shifted, reference) == pytest.approx(0.02)


def test_bad_input_ends_with_one_sentence():
    assert transcript_words("Don't stop-now, Bob!") == ["don't", "stop", "now", "bob"]
    audio = np.zeros(SAMPLE_RATE, np.float32)
    with pytest.raises(AlignmentError, match="qzxvk"):
        align_phones(audio, "hello qzxvk", name="x.wav")
    with pytest.raises(AlignmentError, match="shorter than 0.1 s"):
        align_phones(audio[:100], name="x.wav")


def test_a_clip_without_a_sidecar_is_aligned_to_its_lrs_transcript(synthetic_corpus, tmp_path):
    """What evaluation falls back to for shards of a corpus without sidecars (LRS2/3: a ``Text:`` line)."""
    from experiments.evaluation.phones import clip_phones

    clip = sorted(synthetic_corpus.rglob("*.mp4"))[0]
    shutil.copy(clip, tmp_path / "clip.mp4")
    shutil.copy(clip.with_suffix(".txt"), tmp_path / "clip.txt")
    phones, source = clip_phones(tmp_path / "clip")
    assert source == "pocketsphinx, forced to its transcript"
    truth = json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())
    assert boundary_error(phones, [tuple(phone) for phone in truth["phonemes"]]) < 0.05
    assert clip_phones(clip.parent / clip.stem) == ([tuple(phone) for phone in truth["phonemes"]], "sidecar")
    assert clip_phones(tmp_path / "none") == (None, "no sidecar and no readable audio")
