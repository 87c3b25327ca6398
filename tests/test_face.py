"""Face Mesh -> iBUG-68 mapping, registration and crops (the datamodules/face package) on a real photo."""

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.spatial.transform import Rotation

from datamodules import face
from datamodules.synthetic.faces import base_photo
from datamodules.synthetic.speakers import HELD_OUT_PERSON

# The photos the canonical face is averaged from: the embedded corpus's training people, never its held-out one.
CANONICAL_PEOPLE = ("astronaut", "camera")


@pytest.fixture(scope="module")
def astronaut():
    image = skimage.data.astronaut()
    return image, face.detect_landmarks(image, "astronaut")


def test_mapped_points_keep_their_meaning_on_a_real_photo(astronaut):
    _, points = astronaut
    x, y = points[:, 0], points[:, 1]
    assert x[48] < x[54] and x[36] < x[39] < x[42] < x[45], "right-side points must lie left in the image"
    assert y[8] > y[57] > y[51] > y[33] > y[30] > y[27], "chin below the mouth below the nose below the bridge"
    brows_bottom, nose_tip = y[17:27].max(), y[30]
    for eye in (range(36, 42), range(42, 48)):
        eye = list(eye)
        assert (y[eye] > y[17:27].min()).all() and (y[eye] < nose_tip).all(), "eyes between brows and nose tip"
        assert (x[eye] > x[0]).all() and (x[eye] < x[16]).all(), "eyes inside the jaw line"
    assert brows_bottom < y[36:48].max()
    assert y[66] >= y[62], "lower inner lip not above the upper one"


def test_mirrored_table_matches_a_flipped_photo(astronaut):
    image, points = astronaut
    flipped = face.detect_landmarks(np.ascontiguousarray(image[:, ::-1]), "flipped astronaut")
    expected = points[face.MIRRORED_IBUG68].copy()
    expected[:, 0] = image.shape[1] - 1 - expected[:, 0]
    error = np.linalg.norm(flipped[:, :2] - expected[:, :2], axis=1)
    interocular = np.linalg.norm(points[36, :2] - points[45, :2])
    assert np.median(error) < 0.05 * interocular
    assert (face.MIRRORED_IBUG68[face.MIRRORED_IBUG68] == np.arange(68)).all()


def test_image_without_a_face_is_a_clear_error():
    with pytest.raises(face.NoFaceError, match="No face was found in coffee.png"):
        face.detect_landmarks(skimage.data.coffee(), "coffee.png")


def mirrored(points: np.ndarray) -> np.ndarray:
    """``[68, 3]`` landmarks flipped left-right (x negated, each point swapped with its counterpart)."""
    return points[face.MIRRORED_IBUG68] * np.array([-1.0, 1.0, 1.0])


def frontal_symmetric_face(points: np.ndarray) -> np.ndarray:
    """A photo's landmarks ``[68, 3]`` made left-right symmetric (averaged with their mirror image fitted onto
    them), turned frontal (x along the symmetry plane's normal, y from the eyes' centre down to the chin, z away
    from the camera), centred, with the outer eye corners one unit apart."""
    for _ in range(3):
        flipped = mirrored(points)
        scale, rotation, translation = face.umeyama(flipped, points[None])
        points = (points + scale[0] * flipped @ rotation[0].T + translation[0]) / 2
    pairs = [(point, twin) for point, twin in enumerate(face.MIRRORED_IBUG68) if point < twin]
    x = np.mean([points[twin] - points[point] for point, twin in pairs], 0)
    x /= np.linalg.norm(x)
    down = points[8] - points[36:48].mean(0)
    y = down - (down @ x) * x
    y /= np.linalg.norm(y)
    frontal = (points - points.mean(0)) @ np.stack([x, y, np.cross(x, y)]).T
    return frontal / np.linalg.norm(frontal[45] - frontal[36])


def canonical_face_of(people: tuple[str, ...]) -> np.ndarray:
    """The recipe of ``CANONICAL_FACE``: the Face Mesh landmarks of each person's base photo, made frontal and
    symmetric, averaged, symmetrised again and rescaled."""
    with face.FaceMeshTracker(static_images=True) as tracker:
        faces = [frontal_symmetric_face(tracker(base_photo(person)).astype(np.float64)) for person in people]
    mean = np.mean(faces, 0)
    mean = (mean + mirrored(mean)) / 2
    mean -= mean.mean(0)
    return mean / np.linalg.norm(mean[45] - mean[36])


def test_the_canonical_face_is_built_from_the_training_people_only():
    """The held-out person shapes nothing: the table is the recipe's output on the training people's photos,
    and the same recipe with the held-out person's photo gives another face."""
    assert HELD_OUT_PERSON not in CANONICAL_PEOPLE
    built = canonical_face_of(CANONICAL_PEOPLE)
    np.testing.assert_allclose(face.CANONICAL_FACE, built, atol=2e-3)
    with_held_out = canonical_face_of((*CANONICAL_PEOPLE, HELD_OUT_PERSON))
    assert np.abs(face.CANONICAL_FACE - with_held_out).max() > 0.01


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    rotation = Rotation.from_rotvec([0.1, -0.3, 0.2]).as_matrix()
    target = 2.5 * face.CANONICAL_FACE @ rotation.T + np.array([10.0, -4.0, 3.0])
    target = target + rng.normal(0, 1e-3, target.shape)
    scale, found_rotation, translation = face.umeyama(face.CANONICAL_FACE, target[None])
    assert scale[0] == pytest.approx(2.5, rel=1e-3)
    assert np.allclose(found_rotation[0], rotation, atol=1e-3)
    assert np.allclose(translation[0], [10.0, -4.0, 3.0], atol=1e-2)


def test_registration_separates_expression_from_head_motion(astronaut):
    _, points = astronaut
    moved = face.unregister(*face.register(points[None]))[0] * 1.0
    rotation = Rotation.from_rotvec([0.0, 0.0, 0.2]).as_matrix()
    rotated = (points - points.mean(0)) @ rotation.T * 1.3 + points.mean(0) + [7.0, -3.0, 0.0]
    registered, pose = face.register(np.stack([points, rotated]))
    assert np.allclose(registered[0], registered[1], atol=1e-3), "the same expression registers the same"
    assert pose[1, 2] - pose[0, 2] == pytest.approx(0.2, abs=1e-3)
    assert pose[1, 5] - pose[0, 5] == pytest.approx(np.log(1.3), abs=1e-3)
    assert np.allclose(moved[:, :2], points[:, :2], atol=1e-3), "unregister inverts register in the image plane"
    assert np.abs(registered[0] - face.CANONICAL_FACE).mean() < 0.05, "a frontal photo is near the canonical face"


def test_short_gaps_are_interpolated_and_long_ones_are_not_valid():
    frames = 30
    track = np.linspace(0, 29, frames, dtype=np.float32)[:, None, None] * np.ones((1, 68, 3), np.float32)
    detected = np.ones(frames, bool)
    detected[3:6] = False  # 3 frames: interpolated and valid
    detected[12:20] = False  # 8 frames: filled but not valid
    landmarks = np.where(detected[:, None, None], track, np.nan)
    filled, valid = face.fill_gaps(landmarks, detected)
    assert np.allclose(filled, track)
    expected_valid = np.ones(frames, bool)
    expected_valid[12:20] = False
    assert (valid == expected_valid).all()
    with pytest.raises(face.NoFaceError):
        face.fill_gaps(landmarks, np.zeros(frames, bool))


def test_closed_mouth_frame_is_the_reference():
    closed = face.CANONICAL_FACE.copy()
    opened = closed.copy()
    opened[[65, 66, 67], 1] += 0.2
    track = np.stack([opened, closed, opened])
    assert face.reference_index(track, np.ones(3, bool)) == 1
    assert face.reference_index(track, np.array([True, False, True])) in (0, 2)
    assert face.mouth_opening(opened) > face.mouth_opening(closed) + 0.15


def test_crops_and_jpeg_roundtrip(astronaut):
    image, points = astronaut
    box = face.face_crop_box(points[None], np.ones(1, bool))
    crop = box.cut(image, face.FACE_CROP_SIZE)
    in_crop = box.to_crop(points, face.FACE_CROP_SIZE)
    assert crop.shape == (256, 256, 3)
    assert (in_crop[:, :2] > 0).all() and (in_crop[:, :2] < 256).all(), "the whole face is inside its crop"
    mouth = face.mouth_crop_boxes(points[None])[0]
    assert mouth.side < 0.55 * box.side
    blob, offsets = face.encode_jpeg([crop, crop[::2, ::2]])
    decoded = face.decode_jpeg(blob, offsets, 1)
    assert decoded.shape == (128, 128, 3)
    assert np.abs(decoded.astype(int) - crop[::2, ::2]).mean() < 4


def test_jpeg_bytes_are_opencvs_encoding_of_the_image_in_bgr(astronaut):
    image = astronaut[0][100:356, 150:406]  # RGB, a view with the photo's row stride, as a crop of a frame may be
    bgr = np.ascontiguousarray(image[..., ::-1])
    assert np.array_equal(face.jpeg_bytes(image), cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])


def random_poses(rng, count):
    rotation = rng.normal(0, 0.4, (count, 3))
    translation = rng.uniform(60, 200, (count, 2))
    log_scale = rng.normal(4.5, 0.2, (count, 1))
    return np.concatenate([rotation, translation, log_scale], 1).astype(np.float32)


def test_relative_and_absolute_pose_are_exact_inverses():
    rng = np.random.default_rng(0)
    poses, references = random_poses(rng, 50), random_poses(rng, 50)
    relative = face.relative_pose(poses, references)
    assert np.allclose(face.absolute_pose(relative, references), poses, atol=1e-4)
    assert np.allclose(face.relative_pose(face.absolute_pose(relative, references), references), relative, atol=1e-4)
    assert np.abs(face.relative_pose(references, references)).max() < 1e-5, "the reference's own pose is 0"
    window = face.relative_pose(poses.reshape(5, 10, 6), references[0])  # one reference for [B, T, 6]
    assert window.shape == (5, 10, 6)
    assert np.allclose(face.absolute_pose(window, references[0]).reshape(50, 6), poses, atol=1e-4)


def test_relative_pose_is_in_units_of_the_reference_face():
    reference = np.array([0.0, 0.0, 0.0, 100.0, 120.0, np.log(80.0)], np.float32)
    moved = np.array([0.0, 0.0, 0.3, 140.0, 100.0, np.log(160.0)], np.float32)
    relative = face.relative_pose(moved, reference)
    assert np.allclose(relative, [0.0, 0.0, 0.3, 0.5, -0.25, np.log(2.0)], atol=1e-5)
    # Relative pose does not depend on where the face sits or how big it is in the crop.
    shifted = face.absolute_pose(relative, reference + np.array([0, 0, 0, 30.0, -10.0, 0.5], np.float32))
    assert np.allclose(face.relative_pose(shifted, reference + [0, 0, 0, 30.0, -10.0, 0.5]), relative, atol=1e-5)


def test_relative_pose_composes_with_unregister(astronaut):
    """Landmarks rebuilt from registered points and absolute_pose(relative_pose(...)) are the original ones."""
    _, points = astronaut
    rotation = Rotation.from_rotvec([0.05, 0.1, -0.15]).as_matrix()
    turned = (points - points.mean(0)) @ rotation.T * 0.8 + points.mean(0) + [12.0, 5.0, 0.0]
    registered, pose = face.register(np.stack([points, turned]).astype(np.float32))
    relative = face.relative_pose(pose, pose[0])
    rebuilt = face.unregister(registered, face.absolute_pose(relative, pose[0]))
    assert np.allclose(rebuilt[..., :2], np.stack([points, turned])[..., :2], atol=1e-2)


def test_crop_box_array_round_trip():
    box = face.CropBox(120.5, 98.25, 210.0)
    assert face.CropBox.from_array(box.as_array()) == box
    assert box.as_array().dtype == np.float32 and box.as_array().shape == (3,)


def test_paste_puts_a_cut_back_and_leaves_the_outside_untouched(astronaut):
    image, _ = astronaut  # [512, 512, 3]
    box = face.CropBox(260.0, 200.0, 220.0)
    crop = box.cut(image, face.FACE_CROP_SIZE)
    background = np.zeros_like(image)
    pasted = box.paste(background, crop, feather=0.1)
    assert pasted.dtype == np.uint8 and pasted.shape == image.shape
    low_x, low_y = int(box.centre_x - box.side / 2), int(box.centre_y - box.side / 2)
    high_x, high_y = int(np.ceil(low_x + box.side)), int(np.ceil(low_y + box.side))
    margin = int(np.ceil(0.1 * box.side)) + 2  # the feather, in source pixels, and interpolation
    inner = (slice(low_y + margin, high_y - margin), slice(low_x + margin, high_x - margin))
    error = np.abs(pasted[inner].astype(int) - image[inner].astype(int))
    assert error.mean() < 2.5 and np.percentile(error, 99) < 25, "cut then paste gives the frame back"
    outside = np.ones(image.shape[:2], bool)
    outside[low_y - 1 : high_y + 1, low_x - 1 : high_x + 1] = False
    assert (pasted[outside] == 0).all(), "nothing changes outside the box"
    same = box.paste(image, crop)
    assert (same[outside] == image[outside]).all()
    assert np.abs(same.astype(int) - image.astype(int)).mean() < 1.0, "pasting a frame's own crop changes little"


def test_paste_feathers_the_edge_smoothly():
    box = face.CropBox(100.0, 100.0, 120.0)
    frame = np.zeros((200, 200, 3), np.uint8)
    white = np.full((256, 256, 3), 255, np.uint8)
    row = box.paste(frame, white, feather=0.1)[100, :, 0].astype(int)  # through the middle, left to right
    assert row[:38].max() == 0 and row[162:].max() == 0, "outside the box"
    assert (row[55:145] == 255).all(), "inside the feather"
    rising = row[38:56]
    assert (np.diff(rising) >= 0).all(), "the edge rises monotonically"
    assert np.diff(rising).max() <= 255 / (0.1 * box.side) + 2, "in steps of about 1/feather-width"
    hard = box.paste(frame, white, feather=0.0)[100, :, 0].astype(int)
    assert (hard[41:159] == 255).all() and hard[:39].max() == 0


def test_overlapping_stderr_silencing_from_threads_gives_stderr_back():
    import os
    import threading

    def target() -> tuple[int, int]:
        status = os.fstat(2)
        return status.st_dev, status.st_ino

    original, devnull = target(), os.stat(os.devnull)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with face.native_stderr_silenced():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with face.native_stderr_silenced():
            second_in.set()
            first_out.wait(10)
            seen["after the first left"] = target()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen["after the first left"] == (devnull.st_dev, devnull.st_ino)  # still silenced for the second
    assert target() == original  # and given back when the last one left (not left on /dev/null)
