"""The face moved at the photo's resolution (experiments/generation/compositing.py), blinks
(experiments/generation/blinks.py) and the fidelity measures (experiments/evaluation/fidelity.py)."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.face import CropBox
from experiments.evaluation.fidelity import (
    MESH_EYES,
    change_outside,
    count_blinks,
    eye_aspect_ratio,
    face_region_mask,
    flicker,
    laplacian_variance,
    upper_face_box,
    upper_face_sharpness,
)
from experiments.generation.blinks import BLINK_SECONDS, CLOSED_GAP, GAP_SECONDS, blink_closure, close_eyes
from experiments.generation.compositing import PhotoCompositor
from lightning_modules.renderer import FaceRenderer
from tests.render_data import SyntheticRenderPairs

FEATHER = 0.1


def textured_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """``[H, W, 3]`` uint8 detail at every scale down to the pixel: what an upsampled 256 render cannot give."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height, width, 3)).astype(np.float32)
    detail = cv2.GaussianBlur(noise, (0, 0), 0.7) * 60 + cv2.GaussianBlur(noise, (0, 0), 6) * 600 + 128
    return np.clip(detail, 0, 255).astype(np.uint8)


def trained_looking_renderer() -> FaceRenderer:
    """A renderer whose flow correction and mouth paint are far from zero (random output head)."""
    torch.manual_seed(0)
    model = FaceRenderer(paint_margin=4.0, paint_gain=4.0, mask_bias=-2.0).eval()
    torch.nn.init.normal_(model.net.refiner.out.weight, std=0.05)
    return model


def reference_warp(photo: np.ndarray, box: CropBox, grid: torch.Tensor, region: tuple[slice, slice]) -> np.ndarray:
    """The photo's ``region`` read where ``grid`` ``[S, S, 2]`` (the 256 crop's grid_sample grid, upsampled
    bilinearly by torch's ``grid_sample``) sends each of its pixels, by :func:`lanczos_read`: an independent
    implementation."""
    size = grid.shape[0]
    rows, columns = region
    ys, xs = torch.meshgrid(
        torch.arange(rows.start, rows.stop).float(), torch.arange(columns.start, columns.stop).float(), indexing="ij"
    )
    factor = size / box.side
    crop = torch.stack([(xs - box.centre_x + box.side / 2) * factor, (ys - box.centre_y + box.side / 2) * factor], -1)
    at = (crop + 0.5) * (2.0 / size) - 1.0  # [h, w, 2] normalised crop coordinates of each photo pixel
    read = F.grid_sample(grid.permute(2, 0, 1)[None], at[None], mode="bilinear", padding_mode="border",
                         align_corners=False)[0].permute(1, 2, 0)  # fmt: skip
    source = ((read + 1.0) * size / 2 - 0.5) / factor + torch.tensor(
        [box.centre_x - box.side / 2, box.centre_y - box.side / 2]
    )
    return lanczos_read(photo, source.numpy().astype(np.float64))


def lanczos_read(photo: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``[h, w, 3]`` float: the photo ``[H, W, 3]`` read at pixel coordinates ``at`` ``[h, w, 2]`` (x, y) by the
    8x8 Lanczos kernel (a = 4, weights normalised to sum 1, edges replicated), clamped to [0, 255]."""
    height, width = photo.shape[:2]
    floor = np.floor(at)
    taps = np.arange(-3, 5)
    weights = [np.sinc(d) * np.sinc(d / 4) for d in (at[..., k, None] - floor[..., k, None] - taps for k in (0, 1))]
    weights = [w / w.sum(-1, keepdims=True) for w in weights]  # [h, w, 8] each, x then y
    columns = np.clip(floor[..., 0, None].astype(int) + taps, 0, width - 1)
    rows = np.clip(floor[..., 1, None].astype(int) + taps, 0, height - 1)
    image, read = photo.astype(np.float64), np.zeros((*at.shape[:2], 3))
    for j in range(len(taps)):
        for i in range(len(taps)):
            read += (weights[1][..., j] * weights[0][..., i])[..., None] * image[rows[..., j], columns[..., i]]
    return np.clip(read, 0, 255)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_a_large_face_moves_the_photos_own_pixels_by_the_renderers_field():
    """A 600-px face box: outside the painted mouth and the feathered edge the frame is the photo warped by the
    renderer's own (upsampled) field, detail to the pixel; an upsampled 256 render is far from it; nothing outside
    the box changes."""
    photo = textured_photo(800, 760)
    box = CropBox(380.0, 400.0, 600.0)
    pair = SyntheticRenderPairs(1, 256, seed=3)[0]
    crop = torch.from_numpy(box.cut(photo, 256)).permute(2, 0, 1).float()[None] / 255
    model = trained_looking_renderer()
    inputs = crop, pair["reference_landmarks"][None], pair["target_landmarks"][None]
    motion = model.motion(*inputs)
    compositor = PhotoCompositor(photo, box, 256, FEATHER)
    paint = motion["paint"][0].permute(1, 2, 0).numpy()
    frame = compositor.frame(compositor.displacement(motion["grid"])[0], paint)

    assert np.array_equal(frame[~face_region_mask(photo.shape, box)], photo[~face_region_mask(photo.shape, box)])
    region = compositor.region
    expected = reference_warp(photo, box, motion["grid"][0], region)
    # Compared away from the feathered edge (where the motion is tapered to 0) and from the paint.
    inner = (compositor.taper * compositor.factor >= 1.0) & (
        np.abs(cv2.resize(paint, frame[region].shape[1::-1])).max(-1) == 0
    )
    assert inner.mean() > 0.4 and np.abs(paint).max() > 0.05 and (motion["grid"] != 0).any()
    kept = psnr(frame[region][inner], expected[inner])
    rendered = model.render(*inputs)[0].permute(1, 2, 0).numpy() * 255  # the 256 render, pasted back as before
    upsampled = cv2.resize(rendered, frame[region].shape[1::-1], interpolation=cv2.INTER_CUBIC)
    assert kept > 45, kept
    assert psnr(upsampled[inner], expected[inner]) < kept - 10


def test_the_drawn_mouth_interior_hides_the_photos_texture_at_the_photos_resolution():
    """A mouth opening from closed lips on a 600-px face: where the interior is drawn, the frame shows the drawn
    colours as the 256 render has them, not the texture that the stretched lips read there from the photo (added
    as paint, the drawn colour would carry it)."""
    photo = textured_photo(800, 760)
    box = CropBox(380.0, 400.0, 600.0)
    crop = torch.from_numpy(box.cut(photo, 256)).permute(2, 0, 1).float()[None] / 255
    closed, target = (SyntheticRenderPairs(1, 256, seed=3)[0]["reference_landmarks"][None].clone() for _ in range(2))
    corners, meeting = [[100.0, 180.0], [156.0, 180.0]], [[114.0, 180.0], [128, 180], [142, 180]]
    closed[0, 60:68, :2] = torch.tensor([corners[0], *meeting, corners[1], *meeting[::-1]])
    upper, lower = [[114.0, 170.0], [128, 169], [142, 170]], [[142.0, 192.0], [128, 193], [114, 192]]
    target[0, 60:68, :2] = torch.tensor([corners[0], *upper, corners[1], *lower])  # 24 px open
    model = FaceRenderer().eval()
    motion = model.motion(crop, closed, target)
    compositor = PhotoCompositor(photo, box, 256, FEATHER)
    displacement, paint, drawn_layer = compositor.frame_layers(motion)[0]
    region = compositor.region
    drawn = cv2.remap(drawn_layer, compositor.crop_x, compositor.crop_y, cv2.INTER_LINEAR)  # at the photo's pixels
    drawn_colour, inside = drawn[..., :3] * 255, drawn[..., 3] > 0.999
    assert inside.sum() > 500
    laid = compositor.frame(displacement, paint, drawn_layer)[region][inside].astype(float)
    added = compositor.frame(displacement, paint)[region][inside].astype(float)
    assert np.abs(laid - drawn_colour[inside]).max() < 1
    assert np.abs(added - drawn_colour[inside]).mean() > 5


def test_without_motion_the_photo_comes_back_unchanged_at_any_face_size():
    photo = textured_photo(300, 320, seed=1)
    for side in (120.0, 256.0, 280.0):  # a small face is not upsampled first: the photo's pixels come back
        compositor = PhotoCompositor(photo, CropBox(160.0, 150.0, side), 256, FEATHER)
        frame = compositor.frame(np.zeros((256, 256, 2), np.float32), np.zeros((256, 256, 3), np.float32))
        assert np.array_equal(frame, photo)


def test_a_face_moved_by_half_a_pixel_keeps_the_photos_sharpness():
    """The head moves by fractions of a pixel: read between pixels, the photo's finest detail must survive (a
    bicubic read keeps 0.67 of this photo's Laplacian variance at half a pixel, the Lanczos read 0.83)."""
    photo = textured_photo(300, 320, seed=1)
    compositor = PhotoCompositor(photo, CropBox(160.0, 150.0, 256.0), 256, FEATHER)
    frame = compositor.frame(np.full((256, 256, 2), 0.5, np.float32))
    inner = slice(80, 220), slice(90, 230)  # inside the feathered edge
    assert laplacian_variance(frame[inner]) / laplacian_variance(photo[inner]) > 0.75


def test_the_upper_face_sharpness_measures_the_eyes_and_forehead():
    points = np.zeros((68, 2))
    points[17:27] = np.stack([np.linspace(100, 200, 10), np.full(10, 100.0)], 1)  # brows at y = 100
    points[36:48] = np.stack([np.linspace(110, 190, 12), np.full(12, 130.0)], 1)  # eyes at y = 130
    assert upper_face_box(points) == (100, 70, 201, 131)  # a forehead as tall as brows-to-eyes above the brows
    sharp = textured_photo(300, 300)
    soft = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    assert upper_face_sharpness(soft[None], points[None]) < 0.3 * upper_face_sharpness(sharp[None], points[None])
    flat = np.full((300, 300, 3), 90, np.uint8)
    assert laplacian_variance(flat) == 0
    steps = np.zeros((40, 40), np.uint8)
    steps[:, 20:] = 255  # one vertical edge: the Laplacian is +-255 on its two columns
    assert laplacian_variance(steps) == pytest.approx(
        np.var(np.r_[np.zeros(40 * 38), np.full(40, 255.0), -np.full(40, 255.0)])
    )
    # The median over frames: one blurred frame among three does not move it.
    frames = np.stack([sharp, sharp, soft])
    assert upper_face_sharpness(frames, np.stack([points] * 3)) == upper_face_sharpness(sharp[None], points[None])


def test_change_outside_and_flicker_on_known_frames():
    frames = np.zeros((4, 20, 20, 3), np.uint8)
    frames[1::2, :, :10] = 10  # the left half flickers 0, 10, 0, 10
    region = np.zeros((20, 20), bool)
    region[:, :10] = True
    assert change_outside(frames, region) == 0
    assert change_outside(frames, ~region) == pytest.approx(10)
    assert flicker(frames) == pytest.approx(10 / 2)  # |10 - 0 + 10| / 2 on half the pixels
    ramp = np.stack([np.full((20, 20, 3), 10 * t, np.uint8) for t in range(5)])  # steady change: no flicker
    assert flicker(ramp) == 0 and change_outside(ramp, region) == pytest.approx(10)


def ibug_eyes(frames: int, ratio: float = 0.3) -> np.ndarray:
    """Landmarks ``[T, 68, 2]`` whose eyes are 30 px wide, the lids ``ratio`` of that apart."""
    landmarks = np.zeros((frames, 68, 2))
    for corner, x in ((36, 100.0), (42, 200.0)):
        landmarks[:, corner], landmarks[:, corner + 3] = (x, 100), (x + 30, 100)
        landmarks[:, [corner + 1, corner + 2]] = (x + 15, 100 - 15 * ratio)  # upper lid
        landmarks[:, [corner + 4, corner + 5]] = (x + 15, 100 + 15 * ratio)  # lower lid
    return landmarks


def test_the_eye_aspect_ratio_of_mesh_points():
    mesh = np.zeros((2, 478, 2))
    for eye in MESH_EYES:
        mesh[:, eye[0]], mesh[:, eye[1]] = (0, 0), (40, 0)
        mesh[0, eye[2::2]], mesh[0, eye[3::2]] = (20, -6), (20, 6)  # open: 12 px over 40
        mesh[1, eye[2::2]], mesh[1, eye[3::2]] = (20, -1), (20, 1)
    np.testing.assert_allclose(eye_aspect_ratio(mesh), [0.3, 0.05])


def test_the_blink_schedule_blinks_at_a_human_rate_for_a_seed():
    frames = 25 * 600  # ten minutes
    closure = blink_closure(frames, seed=7)
    assert np.array_equal(closure, blink_closure(frames, seed=7))
    assert not np.array_equal(closure, blink_closure(frames, seed=8))
    assert closure.min() == 0 and closure.max() == pytest.approx(1)
    edges = np.diff(np.concatenate([[0], (closure > 0).astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    gaps, lengths = np.diff(starts) / 25, (stops - starts) / 25
    assert GAP_SECONDS[0] - 0.04 <= gaps.min() and gaps.max() <= GAP_SECONDS[1] + 0.04
    assert abs(gaps.mean() - np.mean(GAP_SECONDS)) < 0.3  # uniform gaps: 15 blinks a minute
    assert BLINK_SECONDS[0] <= lengths.min() and lengths.max() <= BLINK_SECONDS[1]
    assert lengths.std() > 0.03 and 10 <= len(starts) / 10 <= 30

    # Closing the lids: nearly shut at closure 1 (the lower lid stays), as given at 0; every blink is counted.
    landmarks = ibug_eyes(frames)
    closed = close_eyes(landmarks, closure)
    gap = closed[:, [41, 40, 47, 46], 1] - closed[:, [37, 38, 43, 44], 1]  # [T, 4]
    np.testing.assert_allclose(gap[closure == 0], 9.0)
    np.testing.assert_allclose(gap[closure == closure.max()], 9.0 * CLOSED_GAP, atol=1e-3)
    assert np.array_equal(closed[:, [41, 40, 47, 46]], landmarks[:, [41, 40, 47, 46]])
    assert count_blinks(np.full(frames, 0.3)) == 0
    assert count_blinks(gap.mean(1) / 30) == len(starts)


def test_the_onnx_runtime_refinement_renders_the_same_frames():
    model = trained_looking_renderer()
    pairs = SyntheticRenderPairs(3, 256, seed=2)
    inputs = [
        torch.stack([pairs[i][key] for i in range(3)])
        for key in ("reference", "reference_landmarks", "target_landmarks")
    ]
    expected, expected_motion = model.render(*inputs), model.motion(*inputs)
    model.net.use_onnx_runtime()
    torch.testing.assert_close(model.render(*inputs), expected, atol=1e-4, rtol=0)
    for name, value in model.motion(*inputs).items():
        torch.testing.assert_close(value, expected_motion[name], atol=1e-4, rtol=0)
    model.train()
    with torch.enable_grad():  # training never goes through the exported copy
        assert model(*inputs)["output"].requires_grad
