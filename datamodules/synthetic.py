"""Builds the embedded default corpus: synthetic talking-face clips in the real LRS3 and VoxCeleb2 layouts.

Faces are real photographs that installed packages ship (scikit-image's astronaut, matplotlib's Grace
Hopper), varied per pseudo-speaker; speech comes from a source-filter synthesiser; the mouth is moved by
a smooth warp driven by the same articulatory track that sets the formants, so the audio-to-mouth mapping
is learnable yet one-to-many. Each clip has a ``<clip>.truth.json`` sidecar with the ground truth.

A corpus is built in a hidden sibling folder and renamed into place with ``corpus.json`` (the generator's
arguments) inside, so a folder named like the corpus is always complete: see :func:`read_marker`.
"""

import argparse
import functools
import json
import multiprocessing
import os
import shutil
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import signal
from scipy.interpolate import RBFInterpolator
from scipy.ndimage import gaussian_filter1d
from tqdm import tqdm

from datamodules.corpus import CorpusError
from datamodules.face import native_stderr_silenced
from datamodules.media import FPS, SAMPLE_RATE, write_video

MARKER = "corpus.json"
GENERATOR = "datamodules.synthetic"
GENERATOR_VERSION = 1
DEFAULT_OUT = Path("data/corpus/synthetic")  # the embedded corpus, relative to the repository root
LAYOUTS = ("lrs3", "voxceleb2")
PHOTOS = ("astronaut", "grace_hopper")
CONTROL_RATE = 1000  # Hz of the articulatory tracks
REST_FORMANTS = (500.0, 1500.0, 2500.0)  # schwa: the tract at rest, in silence
FORMANT_BANDWIDTHS = (80.0, 100.0, 150.0)
MAX_OPENING = 0.075  # inner-lip gap of the most open vowel, as a fraction of the frame side
UPPER_LIP_SHARE = 0.12  # of the opening, taken by the upper lip rising
MAX_SPREAD = 0.16  # mouth-corner shift at the most spread or rounded vowel, as a fraction of the mouth width

# MediaPipe Face Mesh indices (468-point topology).
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
LEFT_EYE, RIGHT_EYE = (33, 133), (362, 263)
FACE_SIDES = (234, 454)
CHIN, FOREHEAD = 152, 10

# Vowels: transcript spelling -> (F1, F2, F3) Hz of an adult male tract (Peterson & Barney averages).
VOWELS = {
    "EE": (270, 2290, 3010),
    "I": (390, 1990, 2550),
    "E": (530, 1840, 2480),
    "A": (660, 1720, 2410),
    "AH": (730, 1090, 2440),
    "AW": (570, 840, 2410),
    "U": (440, 1020, 2240),
    "OO": (300, 870, 2240),
    "UH": (640, 1190, 2390),
    "ER": (490, 1350, 1690),
}


@dataclass(frozen=True)
class Consonant:
    """How a consonant sounds and looks: its manner, formant locus, lip state and noise band."""

    manner: str  # plosive | fricative | nasal | liquid | aspirate
    voiced: bool
    locus: tuple[float, float, float]  # formant targets while it is articulated, Hz
    opening: float  # lip gap target in [0, 1]
    spread: float  # lip spread (+) or rounding (-) target in [-1, 1]
    noise_band: tuple[float, float] = (0.0, 0.0)  # Hz, of the frication or the burst


CONSONANTS = {
    "P": Consonant("plosive", False, (250, 900, 2300), 0.0, 0.0, (500, 2500)),
    "B": Consonant("plosive", True, (250, 900, 2300), 0.0, 0.0, (400, 2000)),
    "T": Consonant("plosive", False, (300, 1700, 2600), 0.15, 0.2, (3000, 7000)),
    "D": Consonant("plosive", True, (300, 1700, 2600), 0.15, 0.2, (2500, 6000)),
    "K": Consonant("plosive", False, (300, 1900, 2400), 0.2, 0.0, (1500, 3500)),
    "G": Consonant("plosive", True, (300, 1900, 2400), 0.2, 0.0, (1200, 3000)),
    "M": Consonant("nasal", True, (250, 900, 2300), 0.0, 0.0),
    "N": Consonant("nasal", True, (250, 1700, 2600), 0.12, 0.1),
    "F": Consonant("fricative", False, (300, 1100, 2400), 0.05, 0.0, (1200, 7000)),
    "V": Consonant("fricative", True, (300, 1100, 2400), 0.05, 0.0, (1200, 6000)),
    "S": Consonant("fricative", False, (300, 1700, 2600), 0.08, 0.5, (4000, 7500)),
    "Z": Consonant("fricative", True, (300, 1700, 2600), 0.08, 0.5, (3500, 7000)),
    "SH": Consonant("fricative", False, (300, 1900, 2400), 0.1, -0.6, (2000, 5500)),
    "H": Consonant("aspirate", False, REST_FORMANTS, 0.3, 0.0),
    "L": Consonant("liquid", True, (360, 1300, 2700), 0.25, 0.1),
    "R": Consonant("liquid", True, (420, 1300, 1600), 0.2, -0.4),
}
CODAS = ("M", "N", "S", "T", "K", "L")


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
    pitch: float  # Hz
    tract_scale: float  # formant scale of the vocal tract
    style_gain: float  # how wide the speaker opens the mouth
    syllable_rate: float  # per second


@dataclass(frozen=True)
class ClipJob:
    """One clip to write: its speaker, its index and where it goes inside the corpus."""

    speaker: SpeakerSpec
    clip: int
    relative_path: str  # of the .mp4, inside the corpus
    seed: int
    seconds: float
    size: int
    layout: str


# ---------------------------------------------------------------------------------------------------------
# Faces


def _photo(name: str) -> np.ndarray:
    """A base photograph shipped by an installed package, RGB uint8 ``[H, W, 3]``."""
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB"))


_LANDMARKS: dict[str, np.ndarray] = {}


def photo_landmarks(name: str) -> np.ndarray:
    """The 468 Face Mesh points ``[468, 2]`` (pixels) of a base photo, found once per process (kept in memory)."""
    if name not in _LANDMARKS:
        import mediapipe as mp

        image = _photo(name)
        with native_stderr_silenced():
            with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False) as mesh:
                result = mesh.process(image)
        if not result.multi_face_landmarks:
            raise CorpusError(f"MediaPipe finds no face in the base photo {name}; the package that ships it changed.")
        points = result.multi_face_landmarks[0].landmark
        _LANDMARKS[name] = np.array([(p.x * image.shape[1], p.y * image.shape[0]) for p in points], np.float64)
    return _LANDMARKS[name]


@dataclass
class SpeakerFace:
    """A speaker's face on a canvas larger than the frame, with the basis fields of its mouth warp.

    The warp is two smooth forward displacement fields (thin-plate splines through the displacements of the
    face's own landmarks), one for what lies below the lips' parting line (lower lip, chin, jaw) and one for
    what lies above it; each is ``opening * open_basis + spread * spread_basis (+ closing_basis)``, so a
    frame costs a linear combination and a few remaps. Pixels that neither field reaches are the open mouth.
    """

    canvas: np.ndarray  # [C, C, 3] float32 RGB in [0, 255], C = size + 2 * margin
    margin: int  # canvas pixels on each side of the frame
    centre: np.ndarray  # [2] centre of the head motion on the canvas
    landmarks: np.ndarray  # [468, 2] at rest on the canvas
    landmark_basis: np.ndarray  # [468, 3, 2] displacement of each landmark per unit open, spread, closing
    lip_x: np.ndarray  # [K] x of the lip-edge samples, increasing
    upper_lip_y: np.ndarray  # [K] upper inner lip edge at rest
    lower_lip_y: np.ndarray  # [K] lower inner lip edge at rest
    lower_basis: np.ndarray  # [3, C, C, 2] open, spread, closing displacement of the lower face
    upper_basis: np.ndarray  # [3, C, C, 2] open, spread, (zero) closing displacement of the upper face
    mouth_centre_x: float
    mouth_half_width: float
    interior_colours: np.ndarray  # [3, 3] mouth interior, teeth, tongue after the speaker's colour grade


def _colour_grade(image: np.ndarray, spec: SpeakerSpec) -> np.ndarray:
    """The speaker's colour: channel gains, saturation and gamma, on float RGB in [0, 255]."""
    grey = image.mean(axis=-1, keepdims=True)
    graded = grey + spec.saturation * (image - grey)
    graded = graded * np.array(spec.colour_gains, np.float32)
    return 255.0 * np.clip(graded / 255.0, 0.0, 1.0) ** spec.gamma


def _mouth_geometry(landmarks: np.ndarray) -> dict:
    """Lip edges, parting line and face proportions of a face at rest, from its landmarks ``[468, 2]``."""
    upper = landmarks[list(UPPER_INNER_LIP)]
    lower = landmarks[list(LOWER_INNER_LIP)]
    left_x, right_x = sorted((upper[0, 0], upper[-1, 0]))
    lip_x = np.linspace(left_x, right_x, 41)
    upper_y = np.interp(lip_x, *_sorted_by_x(upper))
    lower_y = np.maximum(np.interp(lip_x, *_sorted_by_x(lower)), upper_y)
    return {
        "lip_x": lip_x,
        "upper_y": upper_y,
        "lower_y": lower_y,
        "slit_y": (upper_y + lower_y) / 2,
        "rest_gap": lower_y - upper_y,
        "cx": (left_x + right_x) / 2,
        "half_width": (right_x - left_x) / 2,
        "face_half_width": abs(landmarks[FACE_SIDES[1], 0] - landmarks[FACE_SIDES[0], 0]) / 2,
        "chin_depth": max(landmarks[CHIN, 1] - lower_y.max(), 4.0),
        "upper_lip_height": max(upper_y.min() - landmarks[0, 1], 2.0),
    }


def _sorted_by_x(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]


def _spread_weight(x_norm: np.ndarray, distance_from_slit: np.ndarray) -> np.ndarray:
    """Horizontal shift per unit spread: the corners move fully, fading away from the mouth."""
    lateral = np.sign(x_norm) * np.minimum(np.abs(x_norm), 1.0)
    beyond = np.maximum(np.abs(x_norm) - 1.0, 0.0)
    return lateral * np.exp(-(beyond**2) / 0.4) * np.exp(-(distance_from_slit**2) / 0.6)


def _lower_displacements(points: np.ndarray, geometry: dict) -> np.ndarray:
    """Open / spread / closing displacements ``[N, 3, 2]`` of points on or below the lips' parting line.

    Under the mouth everything drops with the opening; beside it the drop grows with depth towards the
    chin (a jaw rotation seen from the front), so the skin stays continuous at the corners. The closing
    basis shuts a photo's resting lip gap (the astronaut smiles with her teeth showing).
    """
    x_norm = (points[:, 0] - geometry["cx"]) / geometry["half_width"]
    slit = np.interp(points[:, 0], geometry["lip_x"], geometry["slit_y"])
    below = np.clip(points[:, 1] - slit, 0.0, None)
    under_mouth = np.clip(1.0 - x_norm**2, 0.0, 1.0)
    face_x = (points[:, 0] - geometry["cx"]) / geometry["face_half_width"]
    jaw = np.clip(below / geometry["chin_depth"], 0.0, 1.2) * np.clip(1.0 - 0.7 * face_x**2, 0.0, 1.0)
    rest_gap = np.interp(points[:, 0], geometry["lip_x"], geometry["rest_gap"], left=0.0, right=0.0)
    displacement = np.zeros((len(points), 3, 2))
    displacement[:, 0, 1] = np.maximum(under_mouth, 1.15 * jaw)
    displacement[:, 1, 0] = _spread_weight(x_norm, below / geometry["half_width"])
    displacement[:, 2, 1] = -rest_gap * np.clip(1.0 - below / (2.5 * geometry["chin_depth"]), 0.0, 1.0)
    return displacement


def _upper_displacements(points: np.ndarray, geometry: dict) -> np.ndarray:
    """Open / spread / (zero) closing displacements ``[N, 3, 2]`` of points on or above the parting line."""
    x_norm = (points[:, 0] - geometry["cx"]) / geometry["half_width"]
    slit = np.interp(points[:, 0], geometry["lip_x"], geometry["slit_y"])
    above = np.clip(slit - points[:, 1], 0.0, None)
    lip = np.clip(1.0 - x_norm**2, 0.0, 1.0) * np.clip(1.0 - above / (2.0 * geometry["upper_lip_height"]), 0.0, 1.0)
    displacement = np.zeros((len(points), 3, 2))
    displacement[:, 0, 1] = -UPPER_LIP_SHARE * lip
    displacement[:, 1, 0] = _spread_weight(x_norm, above / geometry["half_width"])
    return displacement


def _fit_basis(centres: np.ndarray, values: np.ndarray, side: int, stride: int = 2) -> np.ndarray:
    """Thin-plate spline through ``values [N, 3, 2]`` at ``centres [N, 2]`` over the canvas: ``[3, C, C, 2]``.

    Evaluated every ``stride`` pixels and upsampled bicubically: the field is smooth, and this is 4x faster.
    """
    coarse = np.arange(0, side + 2 * stride, stride, dtype=np.float64)
    grid = np.stack(np.meshgrid(coarse, coarse), -1).reshape(-1, 2)
    spline = RBFInterpolator(centres, values.reshape(len(centres), -1), kernel="thin_plate_spline", smoothing=1e-3)
    field = spline(grid).reshape(len(coarse), len(coarse), 3, 2).astype(np.float32)
    fine = np.arange(side, dtype=np.float32) / stride
    map_x, map_y = np.meshgrid(fine, fine)
    return np.stack([cv2.remap(field[:, :, k], map_x, map_y, cv2.INTER_CUBIC) for k in range(3)])


def _border_ring(side: int, per_side: int = 6) -> np.ndarray:
    """Points ``[4 * per_side, 2]`` along the canvas border, where the warp is pinned to zero."""
    steps = np.linspace(0, side - 1, per_side, endpoint=False)
    last = float(side - 1)
    return np.concatenate(
        [np.stack([steps, np.zeros_like(steps)], 1), np.stack([np.full_like(steps, last), steps], 1)]
        + [np.stack([last - steps, np.full_like(steps, last)], 1), np.stack([np.zeros_like(steps), last - steps], 1)]
    )


@functools.lru_cache(maxsize=4)
def speaker_face(spec: SpeakerSpec, size: int) -> SpeakerFace:
    """Places the speaker's base photo on its canvas and fits the mouth-warp bases to its landmarks."""
    photo = _photo(spec.photo).astype(np.float32)
    marks = photo_landmarks(spec.photo)
    margin = int(round(0.14 * size))
    side = size + 2 * margin
    eye_left, eye_right = marks[list(LEFT_EYE)].mean(0), marks[list(RIGHT_EYE)].mean(0)
    roll = np.arctan2(eye_right[1] - eye_left[1], eye_right[0] - eye_left[0])
    scale = spec.face_fraction * size / np.linalg.norm(marks[FACE_SIDES[1]] - marks[FACE_SIDES[0]])
    face_centre = 0.5 * (marks[FOREHEAD] + marks[CHIN])
    target = np.full(2, side / 2) + np.array(spec.offset) * size
    cos, sin = np.cos(-roll), np.sin(-roll)
    linear = np.diag([(-1.0 if spec.mirror else 1.0) * scale * spec.aspect, scale]) @ np.array(
        [[cos, -sin], [sin, cos]]
    )
    affine = np.hstack([linear, (target - linear @ face_centre)[:, None]])
    canvas = cv2.warpAffine(photo, affine, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    canvas = _colour_grade(np.clip(canvas, 0.0, 255.0), spec).astype(np.float32)
    landmarks = marks @ affine[:, :2].T + affine[:, 2]

    geometry = _mouth_geometry(landmarks)
    slit = np.interp(landmarks[:, 0], geometry["lip_x"], geometry["slit_y"])
    is_lower = landmarks[:, 1] > slit
    is_lower[list(UPPER_INNER_LIP)] = False
    is_lower[list(LOWER_INNER_LIP)] = True
    is_upper = ~is_lower
    is_upper[[UPPER_INNER_LIP[0], UPPER_INNER_LIP[-1]]] = True
    landmark_basis = np.where(
        is_lower[:, None, None], _lower_displacements(landmarks, geometry), _upper_displacements(landmarks, geometry)
    )
    corner_y = geometry["slit_y"][[0, -1]]
    reach = np.array([1.4, 1.8, 2.4, 3.2]) * geometry["half_width"]
    beside = np.concatenate(
        [np.stack([geometry["lip_x"][0] - reach, np.full(4, corner_y[0])], 1)]
        + [np.stack([geometry["lip_x"][-1] + reach, np.full(4, corner_y[1])], 1)]
    )
    neck_x = geometry["cx"] + geometry["face_half_width"] * np.array([-1.2, -0.6, 0.0, 0.6, 1.2])
    neck = np.stack([neck_x, np.full(5, landmarks[CHIN, 1] + 1.2 * geometry["chin_depth"])], 1)
    ring = _border_ring(side)
    lower_centres = np.concatenate([landmarks[is_lower], beside, neck, ring])
    lower_values = np.concatenate(
        [landmark_basis[is_lower], _lower_displacements(beside, geometry), np.zeros((len(neck) + len(ring), 3, 2))]
    )
    upper_centres = np.concatenate([landmarks[is_upper], beside, ring])
    upper_values = np.concatenate(
        [_upper_displacements(landmarks[is_upper], geometry), _upper_displacements(beside, geometry)]
        + [np.zeros((len(ring), 3, 2))]
    )
    interior = _colour_grade(np.array([[38.0, 12.0, 14.0], [225.0, 218.0, 205.0], [125.0, 48.0, 52.0]]), spec)
    return SpeakerFace(
        canvas=canvas,
        margin=margin,
        centre=np.array(target),
        landmarks=landmarks,
        landmark_basis=landmark_basis,
        lip_x=geometry["lip_x"],
        upper_lip_y=geometry["upper_y"],
        lower_lip_y=geometry["lower_y"],
        lower_basis=_fit_basis(lower_centres, lower_values, side),
        upper_basis=_fit_basis(upper_centres, upper_values, side),
        mouth_centre_x=geometry["cx"],
        mouth_half_width=geometry["half_width"],
        interior_colours=interior.astype(np.float32),
    )


def _invert(field: np.ndarray, target_x: np.ndarray, target_y: np.ndarray, steps: int = 6) -> tuple:
    """Where each target pixel comes from under the forward displacement ``field [C, C, 2]`` (damped fixed point)."""
    source_x, source_y = target_x, target_y
    for _ in range(steps):
        moved = cv2.remap(field, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        source_x = 0.3 * source_x + 0.7 * (target_x - moved[..., 0])
        source_y = 0.3 * source_y + 0.7 * (target_y - moved[..., 1])
    return source_x, source_y


@functools.lru_cache(maxsize=2)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)))


def _head_to_frame(face: SpeakerFace, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear part ``[2, 2]`` and offset ``[2]`` of the head motion from canvas to frame pixels."""
    roll, shift_x, shift_y, log_scale = pose
    cos, sin = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    linear = np.exp(log_scale) * np.array([[cos, -sin], [sin, cos]])
    offset = face.centre + np.array([shift_x, shift_y]) - face.margin - linear @ face.centre
    return linear, offset


def render_frame(face: SpeakerFace, size: int, opening: float, spread: float, pose: np.ndarray):
    """One frame ``[size, size, 3]`` uint8 and its 468 landmarks ``[468, 2]`` (frame pixels).

    ``opening`` is the inner-lip gap and ``spread`` the corner shift, both in canvas pixels; ``pose`` is
    (roll degrees, shift x, shift y, log-scale) of the head about the face centre.
    """
    linear, offset = _head_to_frame(face, pose)
    inverse = np.linalg.inv(linear)
    frame_x, frame_y = _pixel_grid(size)
    canvas_x = (inverse[0, 0] * (frame_x - offset[0]) + inverse[0, 1] * (frame_y - offset[1])).astype(np.float32)
    canvas_y = (inverse[1, 0] * (frame_x - offset[0]) + inverse[1, 1] * (frame_y - offset[1])).astype(np.float32)
    amounts = np.array([opening, spread, 1.0], np.float32)
    lower_x, lower_y = _invert(np.tensordot(amounts, face.lower_basis, 1), canvas_x, canvas_y)
    upper_x, upper_y = _invert(np.tensordot(amounts, face.upper_basis, 1), canvas_x, canvas_y)
    above_lower_lip = np.interp(lower_x, face.lip_x, face.lower_lip_y) - lower_y  # > 0: not below the lower lip
    below_upper_lip = upper_y - np.interp(upper_x, face.lip_x, face.upper_lip_y)  # > 0: not above the upper lip
    use_upper = (above_lower_lip > 0) & ((below_upper_lip <= 0) | (below_upper_lip < above_lower_lip))
    source_x = np.where(use_upper, upper_x, lower_x).astype(np.float32)
    source_y = np.where(use_upper, upper_y, lower_y).astype(np.float32)
    frame = cv2.remap(face.canvas, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)

    across = np.clip(1.0 - ((upper_x - face.mouth_centre_x) / face.mouth_half_width) ** 2, 0.0, 1.0)
    inside = (np.clip(np.minimum(above_lower_lip, below_upper_lip), 0.0, 1.0) * np.clip(8.0 * across, 0.0, 1.0))[
        ..., None
    ]
    if opening > 0.5 and inside.any():
        dark, teeth, tongue = face.interior_colours
        teeth_height = min(0.25 * opening, 0.025 * size)
        teeth_weight = (np.clip(teeth_height - below_upper_lip, 0.0, 1.0) * np.sqrt(across))[..., None]
        tongue_weight = (0.6 * np.clip(1.0 - above_lower_lip / (0.35 * opening), 0.0, 1.0) * across)[..., None]
        mouth = dark + tongue_weight * (tongue - dark)
        mouth = mouth + teeth_weight * (teeth - mouth)
        frame = frame + inside * (mouth - frame)
    points = face.landmarks + face.landmark_basis.transpose(0, 2, 1) @ amounts.astype(np.float64)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), points @ linear.T + offset


# ---------------------------------------------------------------------------------------------------------
# Speech


@dataclass
class Speech:
    """A synthesised utterance and the articulatory tracks that made it (at CONTROL_RATE)."""

    audio: np.ndarray  # [N] float32 at SAMPLE_RATE
    formants: np.ndarray  # [M, 3] Hz, smoothed (coarticulated)
    opening: np.ndarray  # [M] lip gap in [0, ~1.2], smoothed
    spread: np.ndarray  # [M] lip spread (+) or rounding (-) in [-1, 1], smoothed
    syllables: list[tuple[str, float, float]]  # spelling, start s, end s


def plan_syllables(rng: np.random.Generator, seconds: float, rate: float) -> list[list[tuple[str, float]]]:
    """Syllables as lists of phones (symbol, seconds), in time order; a pause is ``[("", seconds)]``.

    A clip opens and ends with silence; words of one to three syllables are separated by short gaps or
    longer pauses, and syllables last about ``1 / rate`` seconds. Even a short clip says one syllable.
    """
    plan = [[("", rng.uniform(0.12, 0.3))]]
    used = plan[0][0][1]
    room = seconds - 0.15
    while True:
        word = []
        for _ in range(rng.choice([1, 1, 2, 2, 3])):
            phones = []
            if rng.random() < 0.8:
                phones.append((str(rng.choice(list(CONSONANTS))), rng.uniform(0.05, 0.09)))
            phones.append((str(rng.choice(list(VOWELS))), rng.uniform(0.45, 0.8) / rate))
            if rng.random() < 0.2:
                phones.append((str(rng.choice(CODAS)), rng.uniform(0.05, 0.08)))
            word.append(phones)
        pause = rng.uniform(0.12, 0.4) if rng.random() < 0.45 else rng.uniform(0.02, 0.06)
        length = sum(duration for phones in word for _, duration in phones)
        if used + length > room:
            if len(plan) > 1:
                return plan
            first = word[0]  # nothing said yet: squeeze one syllable into the room left
            squeeze = min(1.0, (room - used) / sum(duration for _, duration in first))
            return [*plan, [(symbol, duration * squeeze) for symbol, duration in first]]
        plan += [*word, [("", pause)]]
        used += length + pause


def _glottal_flow_derivative(phase: np.ndarray) -> np.ndarray:
    """Rosenberg glottal flow over the phase ``[N]`` in [0, 1), differentiated (lip radiation)."""
    opening, closing = 0.4, 0.16
    flow = np.where(
        phase < opening,
        0.5 * (1 - np.cos(np.pi * phase / opening)),
        np.where(phase < opening + closing, np.cos(0.5 * np.pi * (phase - opening) / closing), 0.0),
    )
    return np.diff(flow, prepend=0.0)


def _resonate(source: np.ndarray, frequencies: np.ndarray, bandwidth: float, block: int) -> np.ndarray:
    """A second-order resonator (unit gain at DC) whose frequency (one per block of samples) glides."""
    out = np.empty_like(source)
    state = np.zeros(2)
    radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    for index, start in enumerate(range(0, len(source), block)):
        a1 = -2 * radius * np.cos(2 * np.pi * frequencies[index] / SAMPLE_RATE)
        a2 = radius**2
        chunk, state = signal.lfilter([1 + a1 + a2], [1, a1, a2], source[start : start + block], zi=state)
        out[start : start + block] = chunk
    return out


@functools.lru_cache(maxsize=32)
def _band_pass(low: float, high: float) -> np.ndarray:
    return signal.butter(2, [low, min(high, 0.95 * SAMPLE_RATE / 2)], "bandpass", fs=SAMPLE_RATE, output="sos")


def _add_consonant_noise(noise: np.ndarray, rng: np.random.Generator, phone: Consonant, start: float, length: float):
    """Adds a fricative's hiss over the phone, or a plosive's release burst at its end, into ``noise [N]``."""
    if phone.manner == "fricative":
        first, count = int(start * SAMPLE_RATE), int(length * SAMPLE_RATE)
        envelope = np.minimum(1.0, np.minimum(np.arange(count), np.arange(count)[::-1]) / (0.012 * SAMPLE_RATE))
        level = 0.12 if phone.voiced else 0.25
    elif phone.manner == "plosive":
        count = int(rng.uniform(0.012, 0.022) * SAMPLE_RATE)
        first = int((start + 0.75 * length) * SAMPLE_RATE)
        envelope = np.exp(-np.arange(count) / (0.3 * count))
        level = 0.35 if phone.voiced else 0.6
    else:
        return
    count = min(count, len(noise) - first)
    if count <= 8:
        return
    hiss = signal.sosfilt(_band_pass(*phone.noise_band), rng.standard_normal(count))
    noise[first : first + count] += level * envelope[:count] * hiss / (np.abs(hiss).max() + 1e-9)


def synthesise_speech(rng: np.random.Generator, spec: SpeakerSpec, seconds: float) -> Speech:
    """Source-filter speech from one articulatory plan: a glottal pulse train at the speaker's pitch (with
    accents and declination) through gliding formant resonators, consonant noise, and pauses."""
    samples, steps = int(round(seconds * SAMPLE_RATE)), int(round(seconds * CONTROL_RATE))
    formants = np.tile(np.array(REST_FORMANTS), (steps, 1))
    opening, spread, voicing, aspiration, accent = np.zeros((5, steps))
    noise = np.zeros(samples)
    syllables, time_s, after_pause = [], 0.0, True
    for phones in plan_syllables(rng, seconds, spec.syllable_rate):
        if not phones[0][0]:
            time_s += phones[0][1]
            after_pause = True
            continue
        start = time_s
        vowel = next(VOWELS[symbol] for symbol, _ in phones if symbol in VOWELS)
        openness = np.clip((vowel[0] - 250) / (730 - 250), 0.0, 1.0)
        lip_gain = rng.uniform(0.8, 1.2)  # the same vowel is not always opened as wide: one-to-many
        for symbol, duration in phones:
            span = slice(int(time_s * CONTROL_RATE), min(int((time_s + duration) * CONTROL_RATE), steps))
            if symbol in VOWELS:
                formants[span] = vowel
                opening[span] = lip_gain * (0.15 + 0.85 * openness)
                spread[span] = np.clip((vowel[1] - 1300) / 900, -1.0, 1.0)
                voicing[span] = 0.7 + 0.3 * openness
                accent[span] = 1.0 if after_pause else 0.3
            else:
                phone = CONSONANTS[symbol]
                formants[span] = vowel if phone.manner == "aspirate" else phone.locus
                opening[span] = lip_gain * phone.opening
                spread[span] = phone.spread
                voiced_level = {"nasal": 0.35, "liquid": 0.55, "plosive": 0.06, "fricative": 0.25}
                voicing[span] = voiced_level.get(phone.manner, 0.0) * phone.voiced
                aspiration[span] = 0.5 if phone.manner == "aspirate" else 0.0
                _add_consonant_noise(noise, rng, phone, time_s, duration)
            time_s += duration
        syllables.append(("".join(symbol for symbol, _ in phones), round(start, 3), round(time_s, 3)))
        after_pause = False

    def smooth(track: np.ndarray, milliseconds: float) -> np.ndarray:
        return gaussian_filter1d(track, milliseconds * CONTROL_RATE / 1000, axis=0, mode="nearest")

    formants = smooth(formants, 25) * spec.tract_scale
    opening, spread = smooth(opening, 25), smooth(spread, 25)
    voicing, aspiration = smooth(voicing, 6), smooth(aspiration, 6)
    declination = 0.06 - 0.12 * np.arange(steps) / steps
    drift = smooth(rng.standard_normal(steps), 60)
    pitch = spec.pitch * (1 + 0.12 * smooth(accent, 60) + declination + 0.4 * drift)

    control_time = np.arange(steps) / CONTROL_RATE
    sample_time = np.arange(samples) / SAMPLE_RATE
    pitch_s = np.interp(sample_time, control_time, pitch)
    phase = np.cumsum(pitch_s / SAMPLE_RATE) % 1.0
    source = (
        _glottal_flow_derivative(phase) * (SAMPLE_RATE / pitch_s) / 20 * np.interp(sample_time, control_time, voicing)
    )
    source += 0.05 * np.interp(sample_time, control_time, aspiration) * rng.standard_normal(samples)
    block = SAMPLE_RATE // 200
    block_formants = formants[np.minimum(np.arange(0, samples, block) * CONTROL_RATE // SAMPLE_RATE, steps - 1)]
    voice = source
    for formant, bandwidth in zip(block_formants.T, FORMANT_BANDWIDTHS, strict=True):
        voice = _resonate(voice, formant, bandwidth, block)
    voice = _resonate(voice, np.full(len(block_formants), 3500.0 * spec.tract_scale), 250.0, block)
    audio = voice / (np.abs(voice).max() + 1e-9) + noise
    audio = 0.6 * rng.uniform(0.7, 1.0) * audio / (np.abs(audio).max() + 1e-9) + 1e-3 * rng.standard_normal(samples)
    return Speech(audio.astype(np.float32), formants, opening, spread, syllables)


# ---------------------------------------------------------------------------------------------------------
# Speakers and clips


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


def speaker_specs(seed: int, speakers: int, layout: str) -> list[SpeakerSpec]:
    """The pseudo-speakers of a corpus; speaker k depends only on (seed, k) and the layout's naming."""
    specs = []
    for index, split in enumerate(speaker_splits(speakers, layout)):
        rng = np.random.default_rng([seed, 1, index])
        video_id = _youtube_id(rng)
        pitch = rng.uniform(90.0, 250.0)
        specs.append(
            SpeakerSpec(
                index=index,
                speaker_id=video_id if layout == "lrs3" else f"id{index + 1:05d}",
                split=split,
                photo=PHOTOS[index % len(PHOTOS)],
                mirror=bool(rng.random() < 0.5),
                face_fraction=rng.uniform(0.56, 0.68),
                aspect=rng.uniform(0.92, 1.08),
                offset=tuple(rng.uniform(-0.04, 0.04, 2).round(4)),
                colour_gains=tuple(rng.uniform(0.82, 1.18, 3).round(4)),
                gamma=rng.uniform(0.8, 1.25),
                saturation=rng.uniform(0.6, 1.25),
                pitch=pitch,
                tract_scale=0.92 + 0.25 * (pitch - 90.0) / 160.0,
                style_gain=rng.uniform(0.7, 1.2),
                syllable_rate=rng.uniform(3.5, 5.5),
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


def head_motion(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Smooth random head motion ``[T, 4]``: roll degrees, shift x and y (pixels), log-scale."""
    amplitudes = np.array([2.5, 0.015 * size, 0.012 * size, 0.025])
    times = np.arange(frames)[:, None, None] / FPS
    frequencies = rng.uniform(0.1, 0.6, (1, 4, 3))
    phases = rng.uniform(0, 2 * np.pi, (1, 4, 3))
    weights = rng.dirichlet(np.ones(3), 4)[None]
    return amplitudes * (weights * np.sin(2 * np.pi * frequencies * times + phases)).sum(-1)


def synthesise_clip(job: ClipJob) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames ``[T, S, S, 3]`` uint8, audio ``[N]`` float32 and the ground-truth sidecar of one clip."""
    spec, size = job.speaker, job.size
    rng = np.random.default_rng([job.seed, 2, spec.index, job.clip])
    speech = synthesise_speech(rng, spec, job.seconds)
    face = speaker_face(spec, size)
    frames = int(round(job.seconds * FPS))
    clip_gain, lip_lag = rng.uniform(0.85, 1.15), rng.uniform(-0.02, 0.02)
    steps = np.arange(len(speech.opening))
    frame_steps = (np.arange(frames) + 0.5) / FPS * CONTROL_RATE
    lip_steps = frame_steps + lip_lag * CONTROL_RATE
    openings = MAX_OPENING * size * spec.style_gain * clip_gain * np.interp(lip_steps, steps, speech.opening)
    spreads = MAX_SPREAD * 2 * face.mouth_half_width * spec.style_gain * np.interp(lip_steps, steps, speech.spread)
    poses = head_motion(rng, frames, size)
    video = np.empty((frames, size, size, 3), np.uint8)
    mouth_opening, lip_width = [], []
    for index in range(frames):
        video[index], points = render_frame(face, size, openings[index], spreads[index], poses[index])
        mouth_opening.append(float(np.linalg.norm(points[14] - points[13])))
        lip_width.append(float(np.linalg.norm(points[MOUTH_CORNERS[1]] - points[MOUTH_CORNERS[0]])))
    formants = np.stack([np.interp(frame_steps, steps, track) for track in speech.formants.T], 1)
    truth = {
        "fps": FPS,
        "speaker": spec.speaker_id,
        "frames": frames,
        "sample_rate": SAMPLE_RATE,
        "mouth_opening": np.round(mouth_opening, 3).tolist(),
        "lip_width": np.round(lip_width, 3).tolist(),
        "head_pose": np.round(poses, 4).tolist(),
        "head_pose_order": ["roll_degrees", "shift_x_px", "shift_y_px", "log_scale"],
        "formants": np.round(formants, 1).tolist(),
        "syllables": [list(syllable) for syllable in speech.syllables],
        "seed": job.seed,
        "clip": job.clip,
        "photo": spec.photo,
        "mirror": spec.mirror,
        "pitch_hz": round(spec.pitch, 2),
        "style_gain": round(spec.style_gain, 4),
        "clip_gain": round(clip_gain, 4),
        "lip_lag_s": round(lip_lag, 4),
    }
    return video, speech.audio, truth


def lrs3_transcript(syllables: list[tuple[str, float, float]]) -> str:
    """An LRS3-style ``<utt>.txt``: the text, a confidence, and one timed line per syllable."""
    lines = [f"Text:  {' '.join(text for text, _, _ in syllables)}", "Conf:  4", "", "WORD START END ASDSCORE"]
    lines += [f"{text} {start:.2f} {end:.2f} 5.0" for text, start, end in syllables]
    return "\n".join(lines) + "\n"


def _write_clip(job: ClipJob, root: Path) -> str:
    """Writes one clip, its sidecar and (LRS3) its transcript under ``root``; returns its relative path."""
    video, audio, truth = synthesise_clip(job)
    path = root / job.relative_path
    write_video(path, video, audio)
    path.with_name(f"{path.stem}.truth.json").write_text(json.dumps(truth) + "\n")
    if job.layout == "lrs3":
        path.with_suffix(".txt").write_text(lrs3_transcript(truth["syllables"]))
    return job.relative_path


# ---------------------------------------------------------------------------------------------------------
# The corpus


def _share_landmarks(landmarks: dict[str, np.ndarray]) -> None:
    """Pool initialiser: the workers reuse the parent's Face Mesh points instead of loading MediaPipe."""
    _LANDMARKS.update(landmarks)


def _write_clip_in(arguments: tuple[ClipJob, Path]) -> str:
    return _write_clip(*arguments)


def read_marker(folder: str | Path) -> dict | None:
    """The ``corpus.json`` of a complete generated corpus, or None when ``folder`` is not one."""
    marker = Path(folder) / MARKER
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("generator") == GENERATOR else None


def _validate(layout: str, speakers: int, clips: int, seconds: float, seed: int, size: int, workers: int) -> None:
    if layout not in LAYOUTS:
        raise CorpusError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    if speakers < 1:
        raise CorpusError(f"A corpus needs at least 1 speaker, got {speakers}.")
    if clips < 1:
        raise CorpusError(f"A corpus needs at least 1 clip per speaker, got {clips}.")
    if not 1.0 <= seconds <= 600.0:
        raise CorpusError(f"Clips must last between 1 and 600 seconds, got {seconds}.")
    if seed < 0:
        raise CorpusError(f"The seed must be a non-negative integer, got {seed}.")
    if size % 2 or not 64 <= size <= 1024:
        raise CorpusError(f"The frame size must be an even number of pixels from 64 to 1024, got {size}.")
    if workers < 1:
        raise CorpusError(f"At least 1 worker is needed, got {workers}.")


def _check_writable(out: Path) -> None:
    """Raises CorpusError naming the reason when ``out`` cannot be created as a folder."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"Cannot write the corpus to {out}: it exists and is a file, not a folder.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CorpusError(f"Cannot write the corpus to {out}: {ancestor} is a file, not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CorpusError(f"Cannot write the corpus to {out}: {ancestor} is not writable.")


def _remove_stale_staging(out: Path) -> None:
    """Removes hidden half-built siblings of ``out`` left by generator runs that were killed."""
    for staging in out.parent.glob(f".{out.name}.partial-*"):
        pid = staging.name.removeprefix(f".{out.name}.partial-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def generate_corpus(
    out: str | Path,
    layout: str = "lrs3",
    speakers: int = 8,
    clips: int = 6,
    seconds: float = 4.0,
    seed: int = 0,
    size: int = 256,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Writes a synthetic corpus to ``out`` and returns its path; does nothing if it is already there.

    The clips are built in a hidden sibling folder, ``corpus.json`` is written last, and the folder is
    renamed to ``out``: an interrupted run never leaves anything under ``out``. An ``out`` that holds a
    corpus made with other arguments is replaced only when ``force`` is set; any other non-empty folder is
    never touched. Every clip depends only on (seed, speaker, clip), so ``workers`` changes nothing but time.
    """
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if multiprocessing.current_process().daemon:  # a pool worker cannot start its own pool
        workers = 1
    _validate(layout, speakers, clips, seconds, seed, size, workers)
    out = Path(out).absolute()
    arguments = {"layout": layout, "speakers": speakers, "clips": clips, "seconds": float(seconds)}
    arguments |= {"seed": seed, "size": size, "version": GENERATOR_VERSION}
    say = (lambda message: print(message, file=sys.stderr)) if progress else (lambda message: None)
    _check_writable(out)
    existing = read_marker(out)
    if existing is not None and existing["arguments"] == arguments:
        say(f"{out} is already a complete corpus with these arguments; nothing to do.")
        return out
    if existing is not None and not force:
        made = existing["arguments"]
        differences = ", ".join(
            f"{key} {made.get(key)} (asked {value})" for key, value in arguments.items() if made.get(key) != value
        )
        raise CorpusError(
            f"{out} holds a corpus made with other arguments: {differences}; "
            "pass --force (make corpus FORCE=1) to replace it, or choose another folder."
        )
    if existing is None and out.is_dir() and any(out.iterdir()):
        raise CorpusError(f"{out} exists and is not a generated corpus (no {MARKER}); choose another folder.")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        started = time.monotonic()
        specs = speaker_specs(seed, speakers, layout)
        jobs = [
            ClipJob(spec, clip, clip_path(spec, clip, seed, layout), seed, float(seconds), size, layout)
            for spec in specs
            for clip in range(clips)
        ]
        bar = tqdm(total=len(jobs), unit="clip", desc="corpus", disable=not progress)
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                _write_clip(job, staging)
                bar.update()
        else:
            landmarks = {name: photo_landmarks(name) for name in PHOTOS}
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_share_landmarks, initargs=(landmarks,)) as pool:
                for _ in pool.imap_unordered(_write_clip_in, [(job, staging) for job in jobs]):
                    bar.update()
        bar.close()
        splits = {
            split: [spec.speaker_id for spec in specs if spec.split == split]
            for split in dict.fromkeys(spec.split for spec in specs)
        }
        marker = {
            "generator": GENERATOR,
            "arguments": arguments,
            "clips": sorted(job.relative_path for job in jobs),
            "splits": splits,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        if (read_marker(out) or {}).get("arguments") != arguments:  # else another run just made the same
            _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(
        f"Wrote {len(jobs)} clips ({layout}, {speakers} speakers, {seconds:g} s) to {out} "
        f"in {time.monotonic() - started:.1f} s."
    )
    return out


def ensure_default_corpus(out: str | Path = DEFAULT_OUT) -> Path:
    """The embedded corpus (the defaults of ``make corpus``), generated first if it is not complete."""
    return generate_corpus(out)


def _move_into_place(staging: Path, out: Path) -> None:
    """Renames the finished ``staging`` folder to ``out``, replacing an empty folder or an older corpus."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
        return
    replaced = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    out.rename(replaced)
    staging.rename(out)
    shutil.rmtree(replaced, ignore_errors=True)


class _Parser(argparse.ArgumentParser):
    """Answers a bad argument with one sentence and exit status 2, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}.\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m datamodules.synthetic",
        description="Generate the embedded synthetic talking-face corpus in the LRS3 or VoxCeleb2 layout.",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="corpus folder (default: %(default)s)")
    parser.add_argument("--layout", default="lrs3", choices=LAYOUTS, help="folder layout (default: %(default)s)")
    parser.add_argument("--speakers", type=int, default=8, help="pseudo-speakers (default: %(default)s)")
    parser.add_argument("--clips", type=int, default=6, help="clips per speaker (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: min(2, CPUs))")
    parser.add_argument("--force", action="store_true", help="replace a corpus made with other arguments")
    args = parser.parse_args(argv)
    try:
        generate_corpus(
            args.out,
            args.layout,
            args.speakers,
            args.clips,
            args.seconds,
            args.seed,
            args.size,
            args.workers,
            force=args.force,
        )
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: writing the corpus to {args.out} failed ({error}); nothing was left behind.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"Interrupted; nothing was left under {args.out}.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
