"""Registration of 68-point landmarks to a canonical face and back: similarity fits, head pose (absolute and
relative to a reference), and the mouth measures that pick the MDN's reference frame."""

import numpy as np
from scipy.spatial.transform import Rotation

# Points that move with the head but not with speech: upper jaw, nose, eyes.
RIGID_POINTS = np.array([0, 1, 2, 14, 15, 16, *range(27, 48)])
INNER_LIPS = np.arange(60, 68)
OUTER_LIPS = np.arange(48, 60)
# The inner-lip points facing each other across the mouth, upper i opposite lower i.
UPPER_INNER_LIP, LOWER_INNER_LIP = [61, 62, 63], [67, 66, 65]

# A mean frontal face in iBUG order, x right, y down, z away from the camera, centred, outer eye corners
# (36, 45) one unit apart: the MediaPipe meshes of the embedded corpus's training people's photos (scikit-image's
# astronaut and cameraman; never the held-out person, whose clips are the test split), each made left-right
# symmetric and frontal (the eyes' centre straight above the chin), then averaged. The recipe is
# tests/test_face.py's canonical_face_of, which checks this table against it.
CANONICAL_FACE = np.array([
    [-0.772, -0.316, 0.600], [-0.766, -0.165, 0.649], [-0.756, -0.015, 0.655], [-0.689, 0.311, 0.572],
    [-0.618, 0.445, 0.461], [-0.534, 0.544, 0.340], [-0.434, 0.633, 0.235], [-0.255, 0.754, 0.062],
    [0.000, 0.809, -0.023], [0.255, 0.754, 0.062], [0.434, 0.633, 0.235], [0.534, 0.544, 0.340],
    [0.618, 0.445, 0.461], [0.689, 0.311, 0.572], [0.756, -0.015, 0.655], [0.766, -0.165, 0.649],
    [0.772, -0.316, 0.600], [-0.623, -0.556, 0.077], [-0.554, -0.624, -0.017], [-0.450, -0.658, -0.098],
    [-0.313, -0.656, -0.168], [-0.161, -0.637, -0.210], [0.161, -0.637, -0.210], [0.313, -0.656, -0.168],
    [0.450, -0.658, -0.098], [0.554, -0.624, -0.017], [0.623, -0.556, 0.077], [0.000, -0.451, -0.213],
    [0.000, -0.290, -0.322], [0.000, -0.153, -0.446], [0.000, -0.064, -0.481], [-0.147, 0.040, -0.244],
    [-0.086, 0.082, -0.260], [0.000, 0.084, -0.279], [0.086, 0.082, -0.260], [0.147, 0.040, -0.244],
    [-0.500, -0.399, 0.042], [-0.430, -0.436, -0.027], [-0.313, -0.441, -0.050], [-0.203, -0.386, -0.038],
    [-0.292, -0.371, -0.045], [-0.405, -0.369, -0.023], [0.203, -0.386, -0.038], [0.313, -0.441, -0.050],
    [0.430, -0.436, -0.027], [0.500, -0.399, 0.042], [0.405, -0.369, -0.023], [0.292, -0.371, -0.045],
    [-0.329, 0.306, -0.014], [-0.189, 0.221, -0.204], [-0.093, 0.202, -0.254], [0.000, 0.212, -0.266],
    [0.093, 0.202, -0.254], [0.189, 0.221, -0.204], [0.329, 0.306, -0.014], [0.176, 0.436, -0.146],
    [0.095, 0.464, -0.189], [0.000, 0.474, -0.203], [-0.095, 0.464, -0.189], [-0.176, 0.436, -0.146],
    [-0.283, 0.303, -0.030], [-0.078, 0.275, -0.189], [0.000, 0.276, -0.205], [0.078, 0.275, -0.189],
    [0.283, 0.303, -0.030], [0.081, 0.374, -0.174], [0.000, 0.377, -0.190], [-0.081, 0.374, -0.174],
], np.float32)  # fmt: skip


def umeyama(source: np.ndarray, target: np.ndarray):
    """Similarity ``target ~ scale * rotation @ source + translation`` by least squares, batched.

    ``source`` ``[N, 3]``, ``target`` ``[..., N, 3]``; returns scale ``[...]``, rotation ``[..., 3, 3]``
    and translation ``[..., 3]`` (Umeyama 1991, reflections excluded).
    """
    source_mean = source.mean(-2)
    target_mean = target.mean(-2, keepdims=True)
    centred_source = source - source_mean
    centred_target = target - target_mean
    covariance = np.swapaxes(centred_target, -1, -2) @ centred_source / len(source)  # [..., 3, 3]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    correction = np.ones(singular.shape)
    correction[..., -1] = sign
    rotation = u @ (correction[..., :, None] * vt)
    scale = (singular * correction).sum(-1) / (centred_source**2).sum() * len(source)
    translation = target_mean[..., 0, :] - scale[..., None] * (rotation @ source_mean)
    return scale, rotation, translation


def register(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Registered landmarks ``[T, 68, 3]`` (canonical frame) and pose ``[T, 6]`` of ``landmarks`` ``[T, 68, 3]``."""
    scale, rotation, translation = umeyama(CANONICAL_FACE[RIGID_POINTS], landmarks[:, RIGID_POINTS])
    registered = np.einsum("tji,tnj->tni", rotation, landmarks - translation[:, None]) / scale[:, None, None]
    rotation_vector = Rotation.from_matrix(rotation).as_rotvec()
    pose = np.concatenate([rotation_vector, translation[:, :2], np.log(scale)[:, None]], 1)
    return registered.astype(np.float32), pose.astype(np.float32)


def unregister(registered: np.ndarray, pose: np.ndarray, depth: float = 0.0) -> np.ndarray:
    """Image-space landmarks ``[..., 68, 3]`` from registered ones and their pose ``[..., 6]`` (inverse of
    :func:`register`, with the unobserved depth translation set to ``depth``)."""
    shape = registered.shape
    rotation = Rotation.from_rotvec(pose[..., :3].reshape(-1, 3)).as_matrix()  # [N, 3, 3]
    points = registered.reshape(-1, 68, 3)
    scale = np.exp(pose[..., 5]).reshape(-1, 1, 1)
    translation = np.concatenate([pose[..., 3:5].reshape(-1, 2), np.full((len(points), 1), depth)], 1)
    landmarks = scale * np.einsum("nij,nkj->nki", rotation, points) + translation[:, None]
    return landmarks.reshape(shape).astype(np.float32)


def relative_pose(pose: np.ndarray, reference_pose: np.ndarray) -> np.ndarray:
    """Pose ``[..., 6]`` relative to ``reference_pose`` (``[6]`` or ``[..., 6]``): rotation ``R_t R_ref^-1`` as
    axis-angle, translation ``(t_t - t_ref) / exp(s_ref)`` (in units of the reference face's size), log-scale
    ``s_t - s_ref``. A frame's pose relative to itself is 0."""
    pose, reference = np.broadcast_arrays(np.asarray(pose, np.float64), np.asarray(reference_pose, np.float64))
    flat, flat_reference = pose.reshape(-1, 6), reference.reshape(-1, 6)
    rotation = Rotation.from_rotvec(flat[:, :3]) * Rotation.from_rotvec(flat_reference[:, :3]).inv()
    translation = (flat[:, 3:5] - flat_reference[:, 3:5]) / np.exp(flat_reference[:, 5:6])
    relative = np.concatenate([rotation.as_rotvec(), translation, flat[:, 5:6] - flat_reference[:, 5:6]], 1)
    return relative.reshape(pose.shape).astype(np.float32)


def absolute_pose(relative: np.ndarray, reference_pose: np.ndarray) -> np.ndarray:
    """The absolute pose ``[..., 6]`` of a pose ``relative`` ``[..., 6]`` to ``reference_pose`` (``[6]`` or
    ``[..., 6]``): the exact inverse of :func:`relative_pose`."""
    relative, reference = np.broadcast_arrays(np.asarray(relative, np.float64), np.asarray(reference_pose, np.float64))
    flat, flat_reference = relative.reshape(-1, 6), reference.reshape(-1, 6)
    rotation = Rotation.from_rotvec(flat[:, :3]) * Rotation.from_rotvec(flat_reference[:, :3])
    translation = flat_reference[:, 3:5] + flat[:, 3:5] * np.exp(flat_reference[:, 5:6])
    pose = np.concatenate([rotation.as_rotvec(), translation, flat_reference[:, 5:6] + flat[:, 5:6]], 1)
    return pose.reshape(relative.shape).astype(np.float32)


def inner_lip_area(landmarks: np.ndarray) -> np.ndarray:
    """Area ``[...]`` of the inner-lip polygon (points 60-67) in the image plane: 0 for a closed mouth."""
    x, y = landmarks[..., INNER_LIPS, 0], landmarks[..., INNER_LIPS, 1]
    return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mean vertical gap ``[...]`` between the inner lips (61-67, 62-66, 63-65), in the landmarks' units."""
    upper, lower = landmarks[..., UPPER_INNER_LIP, 1], landmarks[..., LOWER_INNER_LIP, 1]
    return (lower - upper).mean(-1)


def reference_index(registered: np.ndarray, valid: np.ndarray) -> int:
    """The valid frame with the most closed mouth (smallest inner-lip area): the MDN's reference frame."""
    area = inner_lip_area(registered)
    return int(np.argmin(np.where(valid, area, np.inf)))
