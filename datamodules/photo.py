"""One face photo -> the reference of generation: the face found, its 256 face crop, landmarks, registration, pose.

Face Mesh's own detector is short-range: in a group photo or a half-body portrait it finds nothing. So the
face is found first with MediaPipe's full-range face detector (the short-range one as a second try), the
largest face is taken (with a note when there are several), a square around it with a margin is resampled
to ``MESH_INPUT`` pixels (a small face is upsampled, with a warning that the output will be soft), Face Mesh
runs on that crop in static mode, and its landmarks are mapped back to photo pixels. From there the
reference is made as preprocessing makes a clip's: one face crop box (:func:`face.face_crop_box` on one
frame), the 256x256 crop, its crop-space landmarks, registered landmarks and absolute pose.

The user hears what was assumed: the face detector's confidence, a drawing rather than a photo (most of the face
crop flat colour), the first frame of an animation; a photo over ``MAX_PIXELS`` is refused before it is decoded.
"""

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from datamodules import face

DETECTION_MARGIN = 2.2  # side of the square cut for Face Mesh over the larger side of the detected box
MIN_TILE = 192  # the smallest tile the face detector runs on (its own input size)
MESH_INPUT = 384  # that square's side in pixels once resampled
SMALL_FACE_PIXELS = 100  # a face whose landmark box is at most this wide or tall gets a "soft output" warning
MAX_SIDE = 1920  # larger photos are scaled down to this longer side (the output video's frame)
MIN_SIDE = 32  # smaller photos are refused: the face detector needs a picture, and a face under 32 px is no face
MAX_PIXELS = 8000 * 8000  # larger photos are refused: decoding 8000x8000 takes 1.8 GB, and it is scaled down anyway
# Below this detector confidence a face gets a warning: photos of people scored 0.70 to 0.96 (the embedded corpus's
# base photos, darkened, blurred, greyscale, rotated, JPEG quality 10; matplotlib's Grace Hopper portrait 0.70),
# faces of 25 px upsampled 0.59 to 0.73 (those are warned as small faces too).
LOW_CONFIDENCE = 0.65
# A face crop with more than this share of flat pixels (3x3 standard deviation under FLAT_STD grey levels) is taken
# for a drawing: photos scored 0.001 to 0.24 (the same set), drawn cartoon faces 0.78 to 0.92 (also as JPEG).
DRAWN_SHARE = 0.5
FLAT_STD = 0.5


class PhotoError(ValueError):
    """A photo that cannot be used; the message is one sentence naming the file."""


@dataclass
class Reference:
    """The reference of generation, as preprocessing would make it from one frame.

    ``photo`` ``[H, W, 3]`` uint8 RGB (the frame the video is pasted into, H and W even), ``landmarks``
    ``[68, 3]`` in photo pixels, ``box`` the 256 face crop box in photo pixels, ``crop`` ``[256, 256, 3]``
    uint8, ``crop_landmarks`` ``[68, 3]`` in crop pixels, ``registered`` ``[68, 3]`` and ``pose`` ``[6]``
    (absolute), ``depth`` the depth translation that :func:`face.unregister` needs to give back
    ``crop_landmarks``; ``notes`` and ``warnings`` are sentences for the user.
    """

    photo: np.ndarray
    landmarks: np.ndarray
    box: face.CropBox
    crop: np.ndarray
    crop_landmarks: np.ndarray
    registered: np.ndarray
    pose: np.ndarray
    depth: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _too_large(path: Path, size: str) -> PhotoError:
    """The refusal of a photo over MAX_PIXELS whose ``size`` is, in words, e.g. "14000x14000 pixels"."""
    return PhotoError(
        f"The image {path} is {size}; photos of at most {MAX_PIXELS / 1e6:.0f} megapixels (8000x8000) are read: "
        "scale it down first."
    )


def load_photo(path: str | Path, notes: list[str] | None = None) -> np.ndarray:
    """The photo at ``path`` as RGB uint8 ``[H, W, 3]``, upright by its EXIF orientation; any format PIL reads,
    grayscale, palette, alpha and 16-bit images included; of an animation or a multi-page file, the first frame
    (with a sentence added to ``notes``). Raises PhotoError with one sentence, also for a photo over MAX_PIXELS or
    with a side under MIN_SIDE."""
    path = Path(path)
    if path.is_dir():
        raise PhotoError(f"The image {path} is a folder, not an image file.")
    if not path.is_file():
        raise PhotoError(f"The image {path} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            if image.width * image.height > MAX_PIXELS:
                megapixels = image.width * image.height / 1e6
                raise _too_large(path, f"{image.width}x{image.height} pixels ({megapixels:.0f} megapixels)")
            if min(image.size) < MIN_SIDE:
                raise PhotoError(
                    f"The image {path} is {image.width}x{image.height} pixels; a photo of a face needs at least "
                    f"{MIN_SIDE} on each side."
                )
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and notes is not None:
                notes.append(f"The image {path} holds {frames} frames (an animation or pages); using the first.")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                values = np.asarray(image, np.float32)
                peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
                pixels = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=2))
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            return np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8))
    except PhotoError:
        raise
    except Image.DecompressionBombError as error:  # PIL's own limit (twice 89 MP), checked when it opens the file
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "too large") from error
    except UnidentifiedImageError as error:
        raise PhotoError(f"The image {path} is not a readable image file (not a format PIL knows).") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise PhotoError(f"The image {path} cannot be decoded ({error}); is it corrupt or truncated?") from error


def _fit(photo: np.ndarray, max_side: int) -> np.ndarray:
    """Scales a photo down to ``max_side`` and trims it to even sides (H.264 in yuv420p needs them)."""
    height, width = photo.shape[:2]
    if max(height, width) > max_side:
        factor = max_side / max(height, width)
        photo = cv2.resize(photo, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    height, width = photo.shape[:2]
    return np.ascontiguousarray(photo[: height - height % 2, : width - width % 2])


def _detections(detector, image: np.ndarray, x0: int, y0: int) -> list[tuple[float, ...]]:
    """Boxes ``(x, y, width, height, score)`` that ``detector`` finds in ``image``, offset by ``(x0, y0)``."""
    height, width = image.shape[:2]
    with face.native_stderr_silenced():
        result = detector.process(np.ascontiguousarray(image))
    boxes = []
    for detection in result.detections or []:
        box = detection.location_data.relative_bounding_box
        boxes.append((x0 + box.xmin * width, y0 + box.ymin * height, box.width * width, box.height * height,
                      float(detection.score[0])))  # fmt: skip
    return boxes


def _overlap(small: tuple[float, ...], large: tuple[float, ...]) -> float:
    """The share of ``small``'s area that lies inside ``large``."""
    width = min(small[0] + small[2], large[0] + large[2]) - max(small[0], large[0])
    height = min(small[1] + small[3], large[1] + large[3]) - max(small[1], large[1])
    return max(width, 0.0) * max(height, 0.0) / max(small[2] * small[3], 1e-6)


def detect_faces(photo: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """Face boxes ``(x, y, width, height, confidence)`` in pixels, largest first.

    MediaPipe's full-range detector sees the picture at 192x192, so a face of 100 px in a 2000 px photo is
    missed; it also runs on overlapping square tiles of half and a quarter of the longer side (a pyramid),
    and the short-range detector on the whole picture catches a face that fills it. A box mostly inside a
    larger one (the same face seen at another scale, or part of it at a tile's edge) is dropped.
    """
    height, width = photo.shape[:2]
    boxes = []
    with face.native_stderr_silenced():
        full_range = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        short_range = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    with full_range, short_range:
        boxes += _detections(short_range, photo, 0, 0)
        boxes += _detections(full_range, photo, 0, 0)
        for tile in (max(height, width) // 2, max(height, width) // 4):
            if tile < MIN_TILE:
                break
            step = tile // 2
            for y in range(0, max(height - step, 1), step):
                for x in range(0, max(width - step, 1), step):
                    boxes += _detections(full_range, photo[y : y + tile, x : x + tile], x, y)
    kept: list[tuple[float, ...]] = []
    for box in sorted(boxes, key=lambda box: box[2] * box[3], reverse=True):
        if all(_overlap(box, larger) < 0.5 for larger in kept):
            kept.append(box)
    return kept


def _mesh_in_box(photo: np.ndarray, box: tuple[float, ...]) -> np.ndarray | None:
    """Face Mesh (static mode) on a square around a detected ``box``, landmarks ``[68, 3]`` in photo pixels."""
    x, y, w, h = box[:4]
    square = face.CropBox(x + w / 2, y + h / 2, DETECTION_MARGIN * max(w, h))
    with face.FaceMeshTracker(static_images=True) as tracker:
        points = tracker(square.cut(photo, MESH_INPUT))
    if points is None:
        return None
    origin = np.array([square.centre_x - square.side / 2, square.centre_y - square.side / 2, 0.0], np.float32)
    return (points * (square.side / MESH_INPUT) + origin).astype(np.float32)


def find_face(photo: np.ndarray, name: str = "the image") -> tuple[np.ndarray, list[str], list[str]]:
    """The 68 landmarks ``[68, 3]`` (photo pixels) of the largest face in ``photo``, with notes (the detector's
    confidence among them) and warnings (an unsure detector).

    Raises :class:`face.NoFaceError` naming ``name`` when no face is found.
    """
    notes: list[str] = []
    warnings = []
    boxes = detect_faces(photo)
    landmarks = None
    for rank, box in enumerate(boxes):
        landmarks = _mesh_in_box(photo, box)
        if landmarks is not None:
            if len(boxes) > 1:
                which = "the largest" if rank == 0 else f"the largest one Face Mesh could follow (number {rank + 1})"
                notes.append(
                    f"Found {len(boxes)} faces in {name}; using {which}, {box[2]:.0f}x{box[3]:.0f} px "
                    f"at ({box[0] + box[2] / 2:.0f}, {box[1] + box[3] / 2:.0f})."
                )
            notes.append(f"The face detector found the face in {name} with confidence {box[4]:.2f}.")
            if box[4] < LOW_CONFIDENCE:
                warnings.append(
                    f"The face detector is unsure of the face in {name} (confidence {box[4]:.2f}, under "
                    f"{LOW_CONFIDENCE:g}): check that the video shows the face you meant."
                )
            break
    if landmarks is None:
        with face.FaceMeshTracker(static_images=True) as tracker:
            landmarks = tracker(photo)
        if landmarks is not None:
            warnings.append(
                f"No face detector found a face in {name}; Face Mesh alone placed one: check that the video shows "
                "the face you meant."
            )
    if landmarks is None:
        raise face.NoFaceError(
            f"No face was found in {name}; use a photo with a clearly visible, roughly frontal face."
        )
    extent = float((landmarks[:, :2].max(0) - landmarks[:, :2].min(0)).max())
    if extent <= SMALL_FACE_PIXELS:
        warnings.append(
            f"The face in {name} is small ({extent:.0f} px across): it is upsampled to the "
            f"{face.FACE_CROP_SIZE}x{face.FACE_CROP_SIZE} crop, so the output will be soft."
        )
    return landmarks, notes, warnings


def flat_share(crop: np.ndarray) -> float:
    """The share of pixels of an RGB ``crop`` whose 3x3 neighbourhood is flat (grey-level standard deviation under
    FLAT_STD): near 0 in a photo, whose sensor noise and texture never stay flat, and most of a drawing."""
    grey = crop.astype(np.float32).mean(axis=2)
    mean, square = cv2.blur(grey, (3, 3)), cv2.blur(grey**2, (3, 3))
    return float((np.sqrt(np.maximum(square - mean**2, 0.0)) < FLAT_STD).mean())


def reference_from_photo(photo: np.ndarray, name: str = "the image", max_side: int = MAX_SIDE) -> Reference:
    """The generation reference of an RGB ``photo`` (:class:`Reference`), found as described in the module."""
    photo = _fit(photo, max_side)
    landmarks, notes, warnings = find_face(photo, name)
    box = face.face_crop_box(landmarks[None], np.ones(1, bool))
    crop = box.cut(photo, face.FACE_CROP_SIZE)
    flat = flat_share(crop)
    if flat > DRAWN_SHARE:
        warnings.append(
            f"The face in {name} looks drawn, not photographed ({flat:.0%} of its crop is flat colour): the "
            "renderer learned from photos of people, so the video may not look like a face speaking."
        )
    crop_landmarks = box.to_crop(landmarks, face.FACE_CROP_SIZE)
    registered, pose = face.register(crop_landmarks[None])
    depth = float((crop_landmarks[:, 2] - face.unregister(registered[0], pose[0])[:, 2]).mean())
    return Reference(
        photo=photo,
        landmarks=landmarks,
        box=box,
        crop=crop,
        crop_landmarks=crop_landmarks,
        registered=registered[0],
        pose=pose[0],
        depth=depth,
        notes=notes,
        warnings=warnings,
    )


def load_reference(path: str | Path, max_side: int = MAX_SIDE) -> Reference:
    """:func:`reference_from_photo` of the photo file at ``path`` (:func:`load_photo`), with its notes."""
    notes: list[str] = []
    reference = reference_from_photo(load_photo(path, notes), str(path), max_side)
    reference.notes[:0] = notes
    return reference
