"""MediaPipe Face Mesh -> the 68 iBUG-300W landmarks of a clip's frames or of one photo (the mapping table is in
the package's docstring), and the filling of short gaps where no face was found."""

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator

import mediapipe as mp
import numpy as np

MEDIAPIPE_TO_IBUG68 = np.array([
    127, 234, 93, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])  # fmt: skip
# The left-right counterpart of each iBUG point (a horizontal flip maps point i to MIRRORED_IBUG68[i]).
MIRRORED_IBUG68 = np.array([
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
])  # fmt: skip
MAX_INTERPOLATED_GAP = 5  # frames without a face that are interpolated
MIN_FACE_RATIO = 0.8  # a clip with fewer frames with a face is skipped
_STDERR_LOCK = threading.Lock()
_stderr_silencers = {"count": 0, "saved": -1}  # overlapping native_stderr_silenced() users and the saved fd 2


class NoFaceError(ValueError):
    """No usable face; the message is one sentence naming the input."""


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silences what MediaPipe's C++ side prints to file descriptor 2 while it starts (TFLite and absl banners).

    Threads may overlap (the web page runs jobs side by side): fd 2 is saved by the first and given back by the
    last, so that one thread's exit never restores another's silence for good."""
    with _STDERR_LOCK:
        if _stderr_silencers["count"] == 0:
            _stderr_silencers["saved"] = os.dup(2)
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
        _stderr_silencers["count"] += 1
    try:
        yield
    finally:
        with _STDERR_LOCK:
            _stderr_silencers["count"] -= 1
            if _stderr_silencers["count"] == 0:
                os.dup2(_stderr_silencers["saved"], 2)
                os.close(_stderr_silencers["saved"])


class FaceMeshTracker:
    """MediaPipe Face Mesh over the frames of one clip (tracking mode) or over single photos (static mode)."""

    def __init__(self, static_images: bool = False, min_confidence: float = 0.5):
        with native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_images,
                max_num_faces=1,
                refine_landmarks=False,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
        self._started = False

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """The 68 landmarks ``[68, 3]`` (pixels) of the face in an RGB uint8 frame ``[H, W, 3]``, or None."""
        if self._started:
            result = self._mesh.process(frame)
        else:
            with native_stderr_silenced():
                result = self._mesh.process(frame)
            self._started = True
        if not result.multi_face_landmarks:
            return None
        height, width = frame.shape[:2]
        mesh = result.multi_face_landmarks[0].landmark
        points = np.array([(mesh[i].x, mesh[i].y, mesh[i].z) for i in MEDIAPIPE_TO_IBUG68], np.float32)
        return points * np.array([width, height, width], np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeshTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_landmarks(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks ``[T, 68, 3]`` (NaN where no face) and the detected mask ``[T]`` of a clip's frames."""
    found = []
    with FaceMeshTracker() as tracker:
        for frame in frames:
            found.append(tracker(frame))
    landmarks = np.full((len(found), 68, 3), np.nan, np.float32)
    detected = np.array([points is not None for points in found], bool)
    for index in np.flatnonzero(detected):
        landmarks[index] = found[index]
    return landmarks, detected


def detect_landmarks(image: np.ndarray, name: str = "the image") -> np.ndarray:
    """The 68 landmarks ``[68, 3]`` of the face in one photo; NoFaceError naming ``name`` when there is none."""
    with FaceMeshTracker(static_images=True) as tracker:
        points = tracker(image)
    if points is None:
        raise NoFaceError(f"No face was found in {name}; use a photo with one clearly visible, roughly frontal face.")
    return points


def fill_gaps(landmarks: np.ndarray, detected: np.ndarray, max_gap: int = MAX_INTERPOLATED_GAP):
    """Interpolates missing frames of ``landmarks`` ``[T, 68, 3]``; returns them and the valid mask ``[T]``.

    Every gap is filled (linearly inside the clip, by holding at its ends) so that crops stay continuous,
    but only gaps of at most ``max_gap`` frames count as valid.
    """
    frames = len(detected)
    known = np.flatnonzero(detected)
    if len(known) == 0:
        raise NoFaceError("no frame has a face")
    flat = landmarks.reshape(frames, -1)
    filled = np.stack([np.interp(np.arange(frames), known, flat[known, k]) for k in range(flat.shape[1])], 1)
    valid = detected.copy()
    missing = np.flatnonzero(~detected)
    if len(missing):
        runs = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1)
        for run in runs:
            if len(run) <= max_gap:
                valid[run] = True
    return filled.reshape(landmarks.shape).astype(np.float32), valid
