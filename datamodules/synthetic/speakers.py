"""The pseudo-speakers of the embedded corpus: each one a person's photo with its own look, its own voice and
its own way of moving the mouth, all constant across its clips, and its split.

With three people or more, the test speakers are all one person that no training speaker is (HELD_OUT_PERSON),
and one test speaker in two speaks with a voice that no training speaker uses (HELD_OUT_VOICE: another accent
and espeak-ng's Klatt synthesiser), so learning figures can be read on an unseen face and an unseen voice.
"""

import string
from dataclasses import dataclass

import numpy as np

from datamodules.corpus import speaker_hash
from datamodules.synthetic.articulation import Style
from datamodules.synthetic.faces import NOT_MIRRORED, PHOTOS
from datamodules.synthetic.speech import Voice

HELD_OUT_PERSON = "grace_hopper"
HELD_OUT_VOICE = "en-gb-x-rp+klatt2"
# espeak-ng voices of training speakers, taken in turn: a corpus of more speakers hears more accents and variants
# (the first three are the default corpus's; later ones only appear from about twenty speakers on)
TRAINING_ESPEAK_VARIANTS = (
    "en-us+m3", "en-us+f2", "en-us+m1", "en-us+f4", "en-us+m7", "en-us+f5",
    "en-gb-scotland+f3", "en-029+m4", "en-gb-x-gbclan+f1", "en-us+klatt", "en-gb-x-gbcwmd+m5", "en-us-nyc+m6",
    "en+f3", "en-us+klatt4", "en-029+f1", "en-gb-scotland+m7", "en-us+m2", "en-gb-x-gbclan+klatt3", "en-us-nyc+f5",
)  # fmt: skip


@dataclass(frozen=True)
class SpeakerSpec:
    """Everything that makes one pseudo-speaker: identity, look, voice, speaking style and split."""

    index: int
    speaker_id: str
    split: str
    photo: str
    mirror: bool
    face_fraction: float  # face width over frame side
    aspect: float  # horizontal stretch of the face
    offset: tuple[float, float]  # face centre shift, fraction of the frame side
    colour_gains: tuple[float, float, float]
    gamma: float
    saturation: float
    voice: Voice
    style: Style


def speaker_splits(speakers: int, layout: str) -> list[str]:
    """The split of each speaker: about a quarter (at least two from four speakers on) are test speakers."""
    test = 0 if speakers == 1 else min(speakers - 1, max(2 if speakers >= 4 else 1, round(speakers / 4)))
    rest = speakers - test
    if layout == "voxceleb2":
        return ["dev"] * rest + ["test"] * test
    trainval = max(1, round(rest / 3)) if rest >= 2 else 0
    return ["pretrain"] * (rest - trainval) + ["trainval"] * trainval + ["test"] * test


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))


def _voice(rng: np.random.Generator, engine: str, variant: str) -> Voice:
    if engine == "piper":  # the neural voice is a low male voice (about 93 Hz): its pitch moves with the tract
        return Voice("piper", variant, 50, rng.uniform(0.9, 1.18), rng.uniform(0.88, 1.12), rng.uniform(-8.0, -1.0))
    return Voice(
        "espeak",
        variant,
        int(rng.integers(25, 76)),
        rng.uniform(0.93, 1.08),
        rng.uniform(0.88, 1.12),
        rng.uniform(-8, -1),
    )


def _rest_mouth(seed: int, index: int, parted: float) -> tuple[float, float]:
    """Speaker ``index``'s rest mouth as (opening, spread): closed and neutral, or, for a share ``parted`` of the
    speakers (its own random stream, so that the other draws do not change), parted and smiling."""
    rng = np.random.default_rng([seed, 5, index])
    if rng.random() >= parted:
        return 0.0, 0.0
    return float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.2, 0.6))


def speaker_specs(seed: int, speakers: int, layout: str, parted: float = 0.0) -> list[SpeakerSpec]:
    """The pseudo-speakers of a corpus; speaker k's id and look are drawn from (seed, k) alone, its split from
    the layout's naming; a share ``parted`` of them rests with parted, smiling lips.

    Training speakers take the people other than the held-out one in turn, in the order of the hash by which
    preprocessing picks validation speakers (``datamodules.corpus.validation_speakers`` takes the lowest): so
    the validation split holds new voices of different training people, and every training person keeps
    training speakers of their own. In that order they take the neural voice or an espeak-ng variant as piper,
    espeak, espeak, piper (so each person speaks with both engines). Test speakers are the held-out person and
    alternate between the neural voice and the held-out voice.
    """
    people = list(PHOTOS)
    held_out = HELD_OUT_PERSON if len(people) >= 3 else None
    training_people = [person for person in people if person != held_out]
    splits = speaker_splits(speakers, layout)
    rngs = [np.random.default_rng([seed, 1, index]) for index in range(speakers)]
    video_ids = [_youtube_id(rng) for rng in rngs]
    speaker_ids = [video_ids[index] if layout == "lrs3" else f"id{index + 1:05d}" for index in range(speakers)]
    training_speakers = [index for index, split in enumerate(splits) if split != "test" or not held_out]
    training_rank = {
        index: rank
        for rank, index in enumerate(sorted(training_speakers, key=lambda index: speaker_hash(speaker_ids[index])))
    }
    specs = []
    testing = 0
    for index, (split, rng) in enumerate(zip(splits, rngs, strict=True)):
        if index not in training_rank:
            person = held_out
            engine, variant = ("piper", "joe") if testing % 2 == 0 else ("espeak", HELD_OUT_VOICE)
            testing += 1
        else:
            rank = training_rank[index]
            person = training_people[rank % len(training_people)]
            if rank % 4 in (0, 3):  # so that from four training speakers on each person has both engines
                engine, variant = "piper", "joe"
            else:
                engine, variant = "espeak", TRAINING_ESPEAK_VARIANTS[(rank // 2) % len(TRAINING_ESPEAK_VARIANTS)]
        specs.append(
            SpeakerSpec(
                index=index,
                speaker_id=speaker_ids[index],
                split=split,
                photo=person,
                mirror=bool(rng.random() < 0.5) and person not in NOT_MIRRORED,
                face_fraction=rng.uniform(0.56, 0.68),
                aspect=rng.uniform(0.92, 1.0 if person in NOT_MIRRORED else 1.08),
                offset=tuple(rng.uniform(-0.04, 0.04, 2).round(4)),
                colour_gains=tuple(rng.uniform(0.82, 1.18, 3).round(4)),
                gamma=rng.uniform(0.8, 1.25),
                saturation=rng.uniform(0.6, 1.25),
                voice=_voice(rng, engine, variant),
                style=Style(
                    rng.uniform(0.75, 1.2),
                    rng.uniform(0.7, 1.2),
                    rng.uniform(0.05, 0.1),
                    *_rest_mouth(seed, index, parted),
                ),  # fmt: skip
            )
        )
    return specs


def clip_path(spec: SpeakerSpec, clip: int, seed: int, layout: str) -> str:
    """Where clip ``clip`` of a speaker goes inside the corpus, in the real layout's naming."""
    if layout == "lrs3":
        return f"{spec.split}/{spec.speaker_id}/{clip + 1:05d}.mp4"
    video = clip // 3  # VoxCeleb2 groups a speaker's utterances by source video
    video_id = _youtube_id(np.random.default_rng([seed, 3, spec.index, video]))
    return f"{spec.split}/mp4/{spec.speaker_id}/{video_id}/{clip % 3 + 1:05d}.mp4"
