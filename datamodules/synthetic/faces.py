"""The faces of the embedded corpus: real photographs that installed packages ship, placed per pseudo-speaker,
and a smooth image warp that opens, spreads and rounds the mouth around the photo's own Face Mesh landmarks."""

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from datamodules.corpus import CorpusError
from datamodules.face import native_stderr_silenced

# Every photo of a person that the installed packages ship and MediaPipe finds (searched over scikit-image,
# matplotlib, scipy and imageio data and the Debian image files here): the name -> who and where.
PHOTOS = {
    "astronaut": "Eileen Collins, scikit-image skimage.data.astronaut()",
    "grace_hopper": "Grace Hopper, matplotlib sample data grace_hopper.jpg",
    "camera": "the cameraman, scikit-image skimage.data.camera() (greyscale, three-quarter view)",
}
# Faces seen from the side are never mirrored: MediaPipe follows the cameraman's mouth warp less well mirrored
# (refined-lip r about 0.36 against 0.70 on the same clips), nor stretched wider (speakers.speaker_specs): the
# plain mesh lost the lips of his speaker stretched 1.05 (r 0.10 against 0.61 unstretched, one clip).
NOT_MIRRORED = frozenset({"camera"})
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


def base_photo(name: str) -> np.ndarray:
    """A base photograph shipped by an installed package, RGB uint8 ``[H, W, 3]``."""
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    if name == "camera":
        import skimage.data

        return np.repeat(skimage.data.camera()[..., None], 3, axis=-1)
    if name == "grace_hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
            return np.asarray(image.convert("RGB"))
    raise CorpusError(f"Unknown base photo {name!r}; choose one of {', '.join(PHOTOS)}.")


_LANDMARKS: dict[str, np.ndarray] = {}


def photo_landmarks(name: str) -> np.ndarray:
    """The 468 Face Mesh points ``[468, 2]`` (pixels) of a base photo, found once per process (kept in memory)."""
    if name not in _LANDMARKS:
        import mediapipe as mp

        image = base_photo(name)
        with native_stderr_silenced():
            with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False) as mesh:
                result = mesh.process(image)
        if not result.multi_face_landmarks:
            raise CorpusError(f"MediaPipe finds no face in the base photo {name}; the package that ships it changed.")
        points = result.multi_face_landmarks[0].landmark
        _LANDMARKS[name] = np.array([(p.x * image.shape[1], p.y * image.shape[0]) for p in points], np.float64)
    return _LANDMARKS[name]


def share_landmarks(landmarks: dict[str, np.ndarray]) -> None:
    """Pool initialiser: the workers reuse the parent's Face Mesh points instead of loading MediaPipe."""
    _LANDMARKS.update(landmarks)


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


def _colour_grade(image: np.ndarray, spec) -> np.ndarray:
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
def speaker_face(spec, size: int) -> SpeakerFace:
    """Places the speaker's base photo on its canvas and fits the mouth-warp bases to its landmarks."""
    photo = base_photo(spec.photo).astype(np.float32)
    marks = photo_landmarks(spec.photo)
    margin = int(round(0.14 * size))
    side = size + 2 * margin
    eye_left, eye_right = marks[list(LEFT_EYE)].mean(0), marks[list(RIGHT_EYE)].mean(0)
    roll = np.arctan2(eye_right[1] - eye_left[1], eye_right[0] - eye_left[0])
    # a face's width, or its height over 1.11 (a frontal face's proportion) for a face seen from the side
    width = max(
        np.linalg.norm(marks[FACE_SIDES[1]] - marks[FACE_SIDES[0]]),
        np.linalg.norm(marks[CHIN] - marks[FOREHEAD]) / 1.11,
    )
    scale = spec.face_fraction * size / width
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


def render_frame(face: SpeakerFace, size: int, opening: float, spread: float, pose: np.ndarray, teeth: float = 0.0):
    """One frame ``[size, size, 3]`` uint8 and its 468 landmarks ``[468, 2]`` (frame pixels).

    ``opening`` is the inner-lip gap and ``spread`` the corner shift, both in canvas pixels; ``teeth`` in [0, 1]
    is how much of the gap the upper teeth fill (the lower lip tucked under them); ``pose`` is (roll degrees,
    shift x, shift y, log-scale) of the head about the face centre.
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
        dark, enamel, tongue = face.interior_colours
        teeth_height = max(min(0.25 * opening, 0.025 * size), teeth * opening)
        teeth_weight = (np.clip(teeth_height - below_upper_lip, 0.0, 1.0) * np.sqrt(across))[..., None]
        tongue_weight = (0.6 * np.clip(1.0 - above_lower_lip / (0.35 * opening), 0.0, 1.0) * across)[..., None]
        mouth = dark + tongue_weight * (tongue - dark)
        mouth = mouth + teeth_weight * (enamel - mouth)
        frame = frame + inside * (mouth - frame)
    points = face.landmarks + face.landmark_basis.transpose(0, 2, 1) @ amounts.astype(np.float64)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), points @ linear.T + offset
