"""Offline phone alignment of any English recording with pocketsphinx's bundled model (no download).

With a transcript: forced alignment of its words (the dictionary's pronunciations); without: phone recognition
with the bundled phone language model. Phones come back in the IPA of the embedded corpus's sidecars (``""`` for
silence and noise), so that one measure reads both (``experiments.evaluation.closure``).
"""

import difflib
import json
import re
from pathlib import Path

import numpy as np

from datamodules.corpus import sidecar_path
from datamodules.media import SAMPLE_RATE, MediaError, read_audio

FRAME_RATE = 100  # pocketsphinx's feature frames per second
# CMU dictionary phones (no stress marks, as pocketsphinx's acoustic model has them) -> IPA. AH is the
# unstressed schwa: the model cannot tell it from the stressed, open vowel of "but".
ARPABET_TO_IPA = {
    "AA": "ɑ", "AE": "æ", "AH": "ə", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "ER": "ɚ", "EY": "eɪ",
    "IH": "ɪ", "IY": "i", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "u",
    "B": "b", "CH": "tʃ", "D": "d", "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "dʒ", "K": "k", "L": "l",
    "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip
STRESS_MARKS = "ˈˌ"

Phones = list[tuple[str, float, float]]


class AlignmentError(ValueError):
    """The recording could not be aligned; the message is one sentence."""


def _pcm(audio: np.ndarray) -> bytes:
    """16-bit little-endian PCM of 16 kHz float audio ``[N]`` in [-1, 1]."""
    return (np.clip(np.asarray(audio, np.float64), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _decoder(**config):
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLE_RATE, lm=None, loglevel="FATAL", **config)


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def transcript_words(transcript: str) -> list[str]:
    """The words of a transcript as the dictionary spells them: lower case, letters and apostrophes only."""
    return re.findall(r"[a-z']+", transcript.lower().replace("-", " "))


def _forced(pcm: bytes, transcript: str, name: str) -> Phones:
    decoder = _decoder(bestpath=False)
    words = transcript_words(transcript)
    unknown = [word for word in words if decoder.lookup_word(word) is None]
    if not words or unknown:
        raise AlignmentError(f"The transcript of {name} has no word or words the dictionary lacks: {unknown}.")
    decoder.set_align_text(" ".join(words))
    _decode(decoder, pcm)
    try:
        decoder.set_alignment()
        _decode(decoder, pcm)
    except RuntimeError:
        raise AlignmentError(f"pocketsphinx could not align {name} to its transcript.") from None
    alignment = decoder.get_alignment()
    if alignment is None:
        raise AlignmentError(f"pocketsphinx could not align {name} to its transcript.")
    return [(entry.name, entry.start, entry.start + entry.duration) for entry in alignment.phones()]


def _recognised(pcm: bytes) -> Phones:
    from pocketsphinx import get_model_path

    decoder = _decoder(allphone=get_model_path("en-us/en-us-phone.lm.bin"), lw=2.0, pip=0.3, beam=1e-20, pbeam=1e-20)
    _decode(decoder, pcm)
    return [(segment.word, segment.start_frame, segment.end_frame + 1) for segment in decoder.seg()]


def align_phones(audio: np.ndarray, transcript: str | None = None, name: str = "the recording") -> Phones:
    """Timed phones ``[(ipa, start_s, end_s)]`` of 16 kHz mono ``audio`` ``[N]``: forced alignment of
    ``transcript`` when given, else phone recognition. Silence and noise are ``""``; the list tiles the audio."""
    if len(audio) < SAMPLE_RATE // 10:
        raise AlignmentError(f"{name} is shorter than 0.1 s: too short to align.")
    pcm = _pcm(audio)
    frames = _forced(pcm, transcript, name) if transcript else _recognised(pcm)
    return [(ARPABET_TO_IPA.get(label, ""), start / FRAME_RATE, end / FRAME_RATE) for label, start, end in frames]


def lrs_transcript(path: Path) -> str | None:
    """The words of an LRS-style transcript file (first line ``Text:  WORDS``); None when there is none."""
    try:
        first = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith("Text:"):
        return None
    return first[len("Text:") :].strip() or None


def clip_phones(stem: Path, audio: np.ndarray | None = None) -> tuple[Phones | None, str]:
    """The timed phones of the clip at ``stem`` (its path without suffix) and where they came from: its sidecar
    ``<stem>.truth.json`` (the embedded corpus), else pocketsphinx on ``audio`` (or the clip's own file), forced
    to the LRS-style transcript ``<stem>.txt`` when there is one that aligns, else by phone recognition.
    ``(None, reason)`` when there is neither a sidecar nor readable audio, or the audio cannot be aligned."""
    sidecar = sidecar_path(stem)
    if sidecar.is_file():
        phonemes = json.loads(sidecar.read_text()).get("phonemes")
        if phonemes:
            return [(str(phone), float(start), float(end)) for phone, start, end in phonemes], "sidecar"
    if audio is None:
        found = sorted(path for path in stem.parent.glob(f"{stem.name}.*") if path.suffix not in (".json", ".txt"))
        try:
            audio = read_audio(found[0]) if found else None
        except MediaError:
            audio = None
    if audio is None:
        return None, "no sidecar and no readable audio"
    transcript = lrs_transcript(stem.parent / f"{stem.name}.txt")
    if transcript:
        try:
            return align_phones(audio, transcript, name=str(stem)), "pocketsphinx, forced to its transcript"
        except AlignmentError:
            pass
    try:
        return align_phones(audio, name=str(stem)), "pocketsphinx phone recognition"
    except AlignmentError as error:
        return None, str(error)


def _base(symbol: str) -> str:
    return symbol.strip(STRESS_MARKS)


def boundary_error(aligned: Phones, reference: Phones) -> float:
    """Mean absolute difference (s) of the start and end times of the phones that the two alignments share,
    matched in order by their IPA symbols (stress marks and silences left out)."""
    ours = [phone for phone in aligned if phone[0]]
    theirs = [phone for phone in reference if _base(phone[0])]
    matcher = difflib.SequenceMatcher(None, [p[0] for p in ours], [_base(p[0]) for p in theirs], autojunk=False)
    errors = [
        abs(ours[block.a + k][edge] - theirs[block.b + k][edge])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
        for edge in (1, 2)
    ]
    if not errors:
        raise AlignmentError("The two alignments share no phone.")
    return float(np.mean(errors))
