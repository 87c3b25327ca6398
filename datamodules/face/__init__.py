"""Faces: MediaPipe Face Mesh -> 68 iBUG-300W landmarks (``mesh``), registration to a canonical face
(``geometry``), aligned crops (``crops``).

The 468-point mesh is mapped to the 68 iBUG-300W points by ``MEDIAPIPE_TO_IBUG68`` (iBUG index -> mesh index):

| iBUG  | region (subject's right = image left first)  | MediaPipe mesh indices |
|-------|----------------------------------------------|------------------------|
| 0-8   | jaw, right ear to chin                       | 127 234 93 58 172 136 150 176 152 |
| 9-16  | jaw, chin to left ear                        | 400 379 365 397 288 323 454 356 |
| 17-21 | right eyebrow, outer to inner                | 70 63 105 66 107 |
| 22-26 | left eyebrow, inner to outer                 | 336 296 334 293 300 |
| 27-30 | nose bridge, top to tip                      | 168 197 5 4 |
| 31-35 | nose base, right to left                     | 75 97 2 326 305 |
| 36-41 | right eye: outer, upper x2, inner, lower x2  | 33 160 158 133 153 144 |
| 42-47 | left eye: inner, upper x2, outer, lower x2   | 362 385 387 263 373 380 |
| 48-59 | outer lips from the right corner, clockwise  | 61 39 37 0 267 269 291 405 314 17 84 181 |
| 60-67 | inner lips from the right corner, clockwise  | 78 82 13 312 308 317 14 87 |

Landmarks are 3D: x, y in pixels and MediaPipe's relative depth z scaled like x (smaller z: nearer the camera).
Each frame is registered to ``CANONICAL_FACE`` by a similarity transform (Umeyama) fitted on the rigid points
(upper jaw, nose, eyes): the registered landmarks keep the expression, the pose ``[rx, ry, rz, tx, ty,
log_scale]`` (axis-angle rotation, image-plane translation in pixels, log of the scale) keeps the head motion.
"""

from datamodules.face.crops import (
    FACE_CROP_SCALE,
    FACE_CROP_SIZE,
    MOUTH_CROP_SCALE,
    MOUTH_CROP_SIZE,
    CropBox,
    decode_jpeg,
    encode_jpeg,
    face_crop_box,
    jpeg_bytes,
    mouth_crop_boxes,
    pack_jpegs,
)
from datamodules.face.geometry import (
    CANONICAL_FACE,
    INNER_LIPS,
    LOWER_INNER_LIP,
    OUTER_LIPS,
    RIGID_POINTS,
    UPPER_INNER_LIP,
    absolute_pose,
    inner_lip_area,
    mouth_opening,
    reference_index,
    register,
    relative_pose,
    umeyama,
    unregister,
)
from datamodules.face.mesh import (
    MAX_INTERPOLATED_GAP,
    MEDIAPIPE_TO_IBUG68,
    MIN_FACE_RATIO,
    MIRRORED_IBUG68,
    FaceMeshTracker,
    NoFaceError,
    detect_landmarks,
    fill_gaps,
    native_stderr_silenced,
    track_landmarks,
)

__all__ = [
    "CANONICAL_FACE",
    "FACE_CROP_SCALE",
    "FACE_CROP_SIZE",
    "INNER_LIPS",
    "LOWER_INNER_LIP",
    "MAX_INTERPOLATED_GAP",
    "MEDIAPIPE_TO_IBUG68",
    "MIN_FACE_RATIO",
    "MIRRORED_IBUG68",
    "MOUTH_CROP_SCALE",
    "MOUTH_CROP_SIZE",
    "OUTER_LIPS",
    "RIGID_POINTS",
    "UPPER_INNER_LIP",
    "CropBox",
    "FaceMeshTracker",
    "NoFaceError",
    "absolute_pose",
    "decode_jpeg",
    "detect_landmarks",
    "encode_jpeg",
    "face_crop_box",
    "fill_gaps",
    "inner_lip_area",
    "jpeg_bytes",
    "mouth_crop_boxes",
    "mouth_opening",
    "native_stderr_silenced",
    "pack_jpegs",
    "reference_index",
    "register",
    "relative_pose",
    "track_landmarks",
    "umeyama",
    "unregister",
]
