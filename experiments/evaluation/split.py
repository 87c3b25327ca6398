"""Evaluation of trained checkpoints over a split of the shards, whole clip by whole clip.

A variant is where the landmarks come from: ``model`` (the MDN's most likely component, and K samples for
best-of-K and diversity), ``static`` (the reference frame's landmarks held: a face that does not talk; its video
is the reference photo repeated) or ``truth`` (the true landmarks: through the renderer, the renderer's upper
bound). Frames are rendered when a renderer checkpoint is given.

The closure ratio (:mod:`experiments.evaluation.closure`) of the variant's inner-lip gap is measured against each
clip's phones (:func:`experiments.evaluation.phones.clip_phones`: the raw corpus clip's sidecar, else pocketsphinx
on its audio) beside its baselines on the same frames: the reference's gap held (the static face), the same MDN
driven by its audio windows shuffled in time in blocks of 200 ms (model variant), and the true landmarks.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from datamodules import face
from datamodules.audio import audio_windows
from datamodules.media import MediaError, read_audio
from datamodules.shards import ShardsError, decode_frames, raw_corpus, read_index, split_location
from experiments.evaluation.closure import closure_ratio, frame_classes, landmark_opening, shuffled_in_time
from experiments.evaluation.measure import (
    expert_inputs,
    mel_envelope,
    mouth_opening_track,
    syncnet_boxes,
    track_faces,
)
from experiments.evaluation.phones import Phones, clip_phones
from experiments.evaluation.videos import frame_metrics, landmark_metrics
from lightning_modules.metrics import BestOfKDistance, SampleDiversity
from lightning_modules.sync_scoring import SFESyncExpert, SyncNetScorer, syncnet_crop
from lightning_modules.video_metrics import image_quality

VARIANTS = ("model", "static", "truth")
RENDER_BATCH = 16
NO_RAW_CORPUS = "the raw corpus the shards were made from is not here (--raw)"
SHUFFLE_BLOCK = 5  # frames (200 ms) of the audio's blocks in the time-shuffled baseline


def split_records(shards: str | Path, split: str = "test", limit: int | None = None) -> Iterator[dict]:
    """The raw records (whole clips) of ``split`` in index order; ``shards`` is a folder or a URL (``s3://...``)."""
    from litdata import StreamingDataset

    dataset = StreamingDataset(split_location(shards, split), shuffle=False)
    for position in range(min(len(dataset), limit or len(dataset))):
        yield dataset[position]


def raw_audio(raw: Path, clip: str) -> np.ndarray | None:
    """The clip's 16 kHz audio from the raw corpus ``raw`` the shards were made from; None when it is unreadable."""
    found = sorted(path for path in raw.glob(f"{clip}.*") if not path.name.endswith(".json"))
    try:
        return read_audio(found[0]) if found else None
    except MediaError:
        return None


def model_inputs(record: dict, order: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The MDN's audio ``[1, T, 20, 80]`` (the windows centred on the frames ``order`` ``[T]``, in that order) and
    its registered reference ``[68, 3]``."""
    audio = torch.from_numpy(audio_windows(record["mel"], order).astype(np.float32))[None]
    return audio, torch.from_numpy(record["registered"][int(record["reference_index"])])


def shuffled_audio_track(record: dict, mdn, block: int = SHUFFLE_BLOCK, seed: int = 0) -> np.ndarray:
    """Registered landmarks ``[T, 68, 3]`` of the MDN (most likely component) driven by the clip's audio windows
    cut into blocks of ``block`` frames put back in a seeded random order: the same model and speech, out of time."""
    order = shuffled_in_time(np.arange(int(record["frames"])), block, seed)
    return mdn.generate(*model_inputs(record, order), mode="max")["registered"][0].numpy()


def closure_columns(record: dict, registered: np.ndarray, phones: Phones, shuffled: np.ndarray | None = None) -> dict:
    """The closure ratio of the inner-lip gap of ``registered`` ``[T, 68, 3]`` against ``phones``, with its
    baselines on the same (valid) frames: the reference frame's gap held (``_static``: 1, or NaN when that gap is
    not positive), the ``shuffled`` track when given, and the true landmarks (``_truth``); with the counts of
    closing-phone and open-vowel frames."""
    valid = record["valid"].astype(bool)
    truth = landmark_opening(record["registered"], valid)
    static = np.where(valid, truth[int(record["reference_index"])], np.nan)
    closing, open_vowel = frame_classes(phones, int(record["frames"]))
    values = {
        "closure_ratio": closure_ratio(landmark_opening(registered, valid), phones),
        "closure_ratio_static": closure_ratio(static, phones),
        "closure_ratio_truth": closure_ratio(truth, phones),
        "closing_frames": float((closing & valid).sum()),
        "open_frames": float((open_vowel & valid).sum()),
    }
    if shuffled is not None:
        values["closure_ratio_shuffled"] = closure_ratio(landmark_opening(shuffled, valid), phones)
    return values


def variant_tracks(record: dict, variant: str, mdn, samples: int) -> dict:
    """Registered landmarks ``[T, 68, 3]``, relative pose ``[T, 6]`` (and for ``model`` K samples) of a variant."""
    frames, reference = record["frames"], int(record["reference_index"])
    registered = record["registered"]
    reference_pose = record["pose"][reference]
    if variant == "truth":
        return {"registered": registered, "pose": face.relative_pose(record["pose"], reference_pose)}
    if variant == "static":
        return {"registered": np.repeat(registered[reference][None], frames, 0), "pose": np.zeros((frames, 6))}
    audio, anchor = model_inputs(record, np.arange(frames))
    best = mdn.generate(audio, anchor, mode="max")
    tracks = {"registered": best["registered"][0].numpy(), "pose": best["pose"][0].numpy()}
    if samples > 1:
        tracks["samples"] = mdn.generate(audio, anchor, mode="sample", samples=samples)["registered"]
    return tracks


@torch.no_grad()
def render_clip(record: dict, tracks: dict, renderer) -> np.ndarray:
    """Frames ``[T, 256, 256, 3]`` uint8 of the face crop rendered from the reference frame and ``tracks``."""
    reference = int(record["reference_index"])
    reference_image = decode_frames(record, "face", np.array([reference]))[0]
    absolute = face.absolute_pose(np.asarray(tracks["pose"], np.float32), record["pose"][reference])
    targets = torch.from_numpy(face.unregister(np.asarray(tracks["registered"], np.float32), absolute))
    image = torch.from_numpy(reference_image).permute(2, 0, 1).float()[None] / 255
    anchor = torch.from_numpy(record["landmarks"][reference])[None]
    rendered = []
    for chunk in targets.split(RENDER_BATCH):
        count = len(chunk)
        output = renderer.render(image.expand(count, -1, -1, -1), anchor.expand(count, -1, -1), chunk)
        rendered.append((output.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(rendered)


def clip_metrics(
    record: dict,
    variant: str,
    mdn=None,
    renderer=None,
    samples: int = 5,
    syncnet: SyncNetScorer | None = None,
    expert: SFESyncExpert | None = None,
    audio: np.ndarray | None = None,
    phones: Phones | None = None,
) -> dict[str, float]:
    """Every metric of one clip for one variant (module docstring); image metrics need frames (a renderer, or the
    static variant's held reference photo), the closure columns the clip's ``phones``."""
    valid = record["valid"].astype(bool)
    tracks = variant_tracks(record, variant, mdn, samples)
    values = {"frames": float(record["frames"])}
    values.update(landmark_metrics(np.asarray(tracks["registered"], np.float32), record["registered"], valid))
    if phones is not None:
        shuffled = shuffled_audio_track(record, mdn) if variant == "model" else None
        values.update(closure_columns(record, np.asarray(tracks["registered"]), phones, shuffled))
    if "samples" in tracks:
        target, mask = torch.from_numpy(record["registered"])[None], torch.from_numpy(valid.astype(np.float32))[None]
        best, diversity = BestOfKDistance(), SampleDiversity()
        best.update(tracks["samples"][:, None], target, mask)
        diversity.update(tracks["samples"][:, None], mask)
        values.update(lmd_mouth_best_of_k=float(best.compute()), diversity=float(diversity.compute()))
    if variant == "static":
        reference = int(record["reference_index"])
        frames = decode_frames(record, "face", np.full(record["frames"], reference))
    elif renderer is not None:
        frames = render_clip(record, tracks, renderer)
    else:
        return values
    truth = decode_frames(record, "face", np.arange(record["frames"]))
    quality = image_quality(
        torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255,
        torch.from_numpy(truth).permute(0, 3, 1, 2).float() / 255,
    )
    values.update(ssim=float(quality["ssim"].mean()), psnr=float(quality["psnr"].mean()))
    track = track_faces(frames)
    values.update(frame_metrics(frames, track, mel_envelope(record["mel"], record["frames"])))
    if phones is not None:
        values["closure_ratio_rendered"] = closure_ratio(mouth_opening_track(track), phones)
    if syncnet is not None and audio is not None:
        boxes = syncnet_boxes(track)
        crops = np.stack([syncnet_crop(frame, box) for frame, box in zip(frames, boxes, strict=True)])
        score = syncnet.score(crops, audio)
        values.update(lse_d=score.distance, lse_c=score.confidence, lse_offset=float(score.offset))
    if expert is not None:
        score = expert.score(*expert_inputs(frames, record["mel"], track, expert.visual_input))
        values.update(expert_sync_d=score.distance, expert_sync_c=score.confidence)
    return values


def evaluate_split(
    shards: str | Path,
    variant: str,
    mdn=None,
    renderer=None,
    split: str = "test",
    samples: int = 5,
    syncnet: SyncNetScorer | None = None,
    expert: SFESyncExpert | None = None,
    limit: int | None = None,
    raw: str | Path | None = None,
) -> list[dict]:
    """Per-clip metrics (each with its ``clip`` name) of ``variant`` over the clips of ``split``.

    The clips' phones (closure columns) and, with ``syncnet``, their audio come from the raw corpus
    (:func:`datamodules.shards.raw_corpus`: ``raw`` or the one ``index.json`` records); a ShardsError says so
    before any work when ``raw`` or ``syncnet`` is given and it is not there; otherwise the closure columns are
    left out (each item's ``closure_phones`` says why)."""
    corpus = None
    try:
        corpus = raw_corpus(shards, read_index(shards), raw)
    except ShardsError:
        if syncnet is not None or raw is not None:
            raise
    items = []
    for record in split_records(shards, split, limit):
        audio = raw_audio(corpus, record["clip"]) if corpus is not None and syncnet is not None else None
        phones, source = clip_phones(corpus / record["clip"], audio) if corpus is not None else (None, NO_RAW_CORPUS)
        values = clip_metrics(record, variant, mdn, renderer, samples, syncnet, expert, audio, phones)
        items.append({"clip": record["clip"], **values, "closure_phones": source})
    return items
