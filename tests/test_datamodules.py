"""The three DataModules (datamodules/sfe.py, mdn.py, renderer.py) and their shared streaming (shards.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import litdata
import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from litdata import StreamingDataset
from torchvision.transforms.v2 import functional as F

from datamodules import face
from datamodules.mdn import LandmarkDataModule, closed_frames, lips_closed
from datamodules.renderer import RenderDataModule, training_pair
from datamodules.sfe import SFEDataModule, augment_colours
from datamodules.shards import ShardDataModule, ShardsError


def first_batch(datamodule, split):
    datamodule.setup("fit")
    loader = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader}[split]()
    return next(iter(loader))


def assert_layout(batch, expected):
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape and batch[key].dtype == dtype, key


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("visual_input, side", [("mouth", 96), ("face", 256)])
def test_sfe_batches_follow_the_contract(synthetic_shards, split, visual_input, side):
    datamodule = SFEDataModule(str(synthetic_shards), steps=6, visual_input=visual_input, batch_size=2, num_workers=0)
    shipped = first_batch(datamodule, split)
    assert shipped["frames"].dtype == torch.uint8, "frames cross the loader workers as uint8"
    batch = datamodule.on_after_batch_transfer(shipped, 0)
    assert_layout(
        batch,
        {
            "audio": ((2, 6, 20, 80), torch.float32),
            "frames": ((2, 6, 5, 3, side, side), torch.float32),
            "speaker": ((2,), torch.int64),
        },
    )
    assert torch.equal(batch["frames"], shipped["frames"].float() / 255), "no augmentation outside training"
    assert 0 <= batch["frames"].min() and batch["frames"].max() <= 1 and batch["frames"].std() > 0.05
    assert 0 <= batch["audio"].min() and batch["audio"].max() <= 1
    assert batch["speaker"].max() < len(datamodule.speakers)


def test_sfe_colour_augmentation_runs_after_transfer_and_only_in_training(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), steps=4, batch_size=2, num_workers=0)
    shipped = first_batch(datamodule, "train")
    plain = shipped["frames"].float() / 255
    datamodule.trainer = SimpleNamespace(training=False)  # validating inside fit
    assert torch.equal(datamodule.on_after_batch_transfer(shipped, 0)["frames"], plain)
    datamodule.trainer = SimpleNamespace(training=True)
    augmented = datamodule.on_after_batch_transfer(shipped, 0)["frames"]
    assert augmented.dtype == torch.float32 and augmented.shape == plain.shape
    assert 0 <= augmented.min() and augmented.max() <= 1 and not torch.allclose(augmented, plain, atol=0.01)
    datamodule.augment = False
    assert torch.equal(datamodule.on_after_batch_transfer(shipped, 0)["frames"], plain)


class FramesSeen(LightningModule):
    """A stand-in LightningModule that keeps the first SFE frames its training and validation steps see."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault("train", batch["frames"])
        return (self.weight - batch["frames"].mean()) ** 2

    def validation_step(self, batch, batch_idx):
        self.seen.setdefault("val", batch["frames"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_under_a_trainer_steps_see_float_frames_augmented_only_in_training(synthetic_shards):
    model = FramesSeen()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=SFEDataModule(str(synthetic_shards), steps=4, batch_size=2, num_workers=0))
    for stage in ("train", "val"):
        frames = model.seen[stage]
        assert frames.dtype == torch.float32 and 0 <= frames.min() and frames.max() <= 1, stage
    off_grid = lambda frames: (frames * 255 - (frames * 255).round()).abs().max()  # noqa: E731
    assert off_grid(model.seen["val"]) < 1e-3, "validation frames are the stored pixels / 255"
    assert off_grid(model.seen["train"]) > 0.1, "training frames are colour-augmented"


def test_colour_augmentation_draws_once_per_sample():
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(64, 3, 2, 3, 8, 8, generator=generator) * 0.6 + 0.2  # [B, T, 5-ish, 3, H, W]
    assert torch.allclose(augment_colours(frames, strength=0.0, grayscale_probability=0.0), frames, atol=1e-6)
    gray = augment_colours(frames, strength=0.0, grayscale_probability=1.0, generator=generator)
    assert torch.allclose(gray[..., 0, :, :], gray[..., 2, :, :]) and not torch.allclose(gray, frames)
    jittered = augment_colours(frames, grayscale_probability=0.0, generator=generator)
    brightness = jittered.mean((1, 2, 3, 4, 5)) / frames.mean((1, 2, 3, 4, 5))
    assert brightness.std() > 0.05, "each sample gets its own draw"
    grayed = augment_colours(frames, strength=0.0, grayscale_probability=0.5, generator=generator)
    per_sample = (grayed[..., 0, :, :] - grayed[..., 2, :, :]).abs().amax((1, 2, 3, 4)) < 1e-6  # [B]
    assert 10 < per_sample.sum() < 54, "grayscale is drawn per sample, for all its frames alike"


def test_colour_augmentation_is_torchvisions_jitter_and_grayscale_per_sample():
    """The folded colour matrix gives what torchvision's brightness, contrast, saturation and grayscale give in
    sequence with the same factors (on frames whose intermediate values stay in [0, 1], where clamping is moot),
    up to torchvision's red luma weight (0.2989 against 0.299)."""
    frames = torch.rand(6, 2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    augmented = augment_colours(frames, grayscale_probability=0.5, generator=torch.Generator().manual_seed(2))
    draws = torch.Generator().manual_seed(2)
    brightness, contrast, saturation = (0.7 + 0.6 * torch.rand(6, generator=draws) for _ in range(3))
    gray = torch.rand(6, generator=draws) < 0.5
    assert 0 < gray.sum() < 6
    for sample in range(6):
        images = frames[sample].flatten(0, 1)  # [N, 3, H, W]
        expected = torch.stack(
            [
                F.adjust_saturation(
                    F.adjust_contrast(F.adjust_brightness(image, brightness[sample].item()), contrast[sample].item()),
                    saturation[sample].item(),
                )
                for image in images
            ]
        )
        if gray[sample]:
            expected = F.rgb_to_grayscale(expected, num_output_channels=3)
        assert torch.allclose(augmented[sample].flatten(0, 1), expected, atol=2e-4), sample  # luma 0.299 vs 0.2989


def test_sfe_validation_windows_are_fixed_and_training_windows_vary(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), steps=4, batch_size=1, num_workers=0, augment=False)
    datamodule.setup("fit")
    val = datamodule.dataset("val", train=False)
    assert torch.equal(val[0]["audio"], val[0]["audio"])
    train = datamodule.dataset("train", train=True)
    assert any(not torch.equal(train[0]["audio"], train[0]["audio"]) for _ in range(5))


def truncated(record: dict, frames: int, clip: str, speaker: str) -> dict:
    """A copy of a clip record cut to its first ``frames`` frames, under another clip id and speaker."""
    short = {**record, "clip": clip, "speaker": speaker, "frames": frames, "mel": record["mel"][: 4 * frames]}
    for key in ("landmarks", "registered", "pose", "face_detected", "valid"):
        short[key] = record[key][:frames]
    for kind in ("face", "mouth"):
        offsets = record[f"{kind}_offsets"][: frames + 1]
        short[f"{kind}_offsets"], short[f"{kind}_jpeg"] = offsets, record[f"{kind}_jpeg"][: offsets[-1]]
    short["reference_index"] = int(face.reference_index(short["registered"], short["valid"].astype(bool)))
    return short


def identity(item):
    return item


def write_train_split(folder: Path, records: list[dict], chunk_bytes: str = "64MB") -> Path:
    """A shards folder whose train split holds ``records`` in order (LitData) and the index.json that says so."""
    litdata.optimize(
        fn=identity,
        inputs=records,
        output_dir=str(folder / "train"),
        num_workers=1,
        chunk_bytes=chunk_bytes,
        reorder_files=False,
        keep_data_ordered=True,
        verbose=False,
        start_method="fork",
    )
    index = {
        "speakers": sorted({record["speaker"] for record in records}),
        "splits": {"train": [record["clip"] for record in records], "val": [], "test": []},
        "clip_frames": {record["clip"]: int(record["frames"]) for record in records},
    }
    (folder / "index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def shards_with_a_short_clip(synthetic_shards, tmp_path_factory):
    """The session's train clips and, among them, a 20-frame clip of its own speaker ``short``."""
    records = list(StreamingDataset(str(synthetic_shards / "train")))
    short = truncated(records[0], 20, "short/00001", "short")
    return write_train_split(tmp_path_factory.mktemp("short"), [records[0], short, *records[1:]])


class TrainerThatMustNotBeCopied:
    """Stands for the Trainer a DataModule holds while fitting: leaving clips out must not deep-copy it."""

    training = True

    def __deepcopy__(self, memo):
        raise AssertionError("the DataModule's Trainer was deep-copied")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_clips_shorter_than_the_step_span_never_reach_an_sfe_batch(shards_with_a_short_clip, num_workers):
    datamodule = SFEDataModule(str(shards_with_a_short_clip), steps=8, step_stride=3, batch_size=1, num_workers=0)
    datamodule.num_workers = num_workers
    datamodule.trainer = TrainerThatMustNotBeCopied()
    datamodule.setup("fit")
    assert datamodule.span == 26
    short = datamodule.speakers.index("short")
    loader = datamodule.train_dataloader()
    seen = [int(batch["speaker"]) for _ in range(3) for batch in loader]
    assert short not in seen
    others = set(range(len(datamodule.speakers))) - {short}
    assert set(seen) == others and len(seen) == 3 * (len(datamodule.index["splits"]["train"]) - 1)
    landmarks = LandmarkDataModule(str(shards_with_a_short_clip), frames=20, batch_size=1, num_workers=0)
    landmarks.setup("fit")
    assert short in {int(batch["speaker"]) for batch in landmarks.train_dataloader()}, "other stages keep it"


def test_sfe_says_when_no_clip_is_long_enough(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), steps=40, step_stride=3, batch_size=1, num_workers=0)
    datamodule.setup("fit")
    with pytest.raises(ShardsError, match="has no train clip of at least 122 frames"):
        datamodule.train_dataloader()


def landmark_records(shards, split):
    return list(StreamingDataset(str(shards / split)))


@pytest.mark.parametrize("split", ["train", "val"])
def test_landmark_batches_follow_the_contract(synthetic_shards, split):
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=20, batch_size=2, num_workers=0)
    batch = first_batch(datamodule, split)
    assert_layout(
        batch,
        {
            "audio": ((2, 20, 20, 80), torch.float32),
            "registered": ((2, 20, 68, 3), torch.float32),
            "pose": ((2, 20, 6), torch.float32),
            "reference": ((2, 68, 3), torch.float32),
            "reference_pose": ((2, 6), torch.float32),
            "landmarks": ((2, 20, 68, 3), torch.float32),
            "mask": ((2, 20), torch.float32),
            "lips_closed": ((2, 20), torch.float32),
            "visemes": ((2, 20), torch.int64),
            "speaker": ((2,), torch.int64),
        },
    )
    assert batch["mask"].sum() > 0
    interocular = (batch["reference"][:, 45] - batch["reference"][:, 36]).norm(dim=-1)
    assert torch.allclose(interocular, torch.ones(2), atol=0.15), "reference landmarks are in the canonical frame"
    assert batch["pose"][..., 3:5].abs().max() < 2, "translation in units of the face size, not crop pixels"
    absolute = face.absolute_pose(batch["pose"].numpy(), batch["reference_pose"].numpy()[:, None])
    rebuilt = face.unregister(batch["registered"].numpy(), absolute)
    assert np.allclose(rebuilt[..., :2], batch["landmarks"][..., :2].numpy(), atol=1e-2), (
        "unregister(registered, absolute_pose(pose, reference_pose)) gives the landmarks back"
    )
    assert datamodule.statistics == datamodule.index["statistics"]


def window_of(sample: dict, record: dict) -> int:
    """The first frame of the window a sample was taken from (its registered landmarks match the clip's there)."""
    first = sample["registered"][0].numpy()
    return int(np.flatnonzero((record["registered"] == first).all((1, 2)))[0])


@pytest.mark.parametrize("train", [True, False])
def test_the_landmark_reference_is_the_most_closed_mouth_outside_the_window(synthetic_shards, train):
    frames = 20
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=frames, batch_size=1, num_workers=0)
    datamodule.setup("fit")
    speakers = {speaker: number for number, speaker in enumerate(datamodule.speakers)}
    for record in landmark_records(synthetic_shards, "train" if train else "val"):
        sample = datamodule.sample(record, train=train, speaker_index=speakers)
        start = window_of(sample, record)
        outside = record["valid"].astype(bool).copy()
        outside[start : start + frames] = False
        assert outside.any(), "the session clips are longer than the window"
        area = face.inner_lip_area(record["registered"])
        expected = int(np.argmin(np.where(outside, area, np.inf)))
        assert not start <= expected < start + frames
        assert area[expected] < np.median(area[outside]), "a closed mouth, not just any frame"
        assert torch.equal(sample["reference"], torch.from_numpy(record["registered"][expected]))
        assert torch.equal(sample["reference_pose"], torch.from_numpy(record["pose"][expected]))
        assert np.allclose(
            face.absolute_pose(sample["pose"].numpy(), sample["reference_pose"].numpy()),
            record["pose"][start : start + frames],
            atol=1e-4,
        )


def test_a_window_covering_the_clip_takes_its_reference_inside(synthetic_shards):
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=400, batch_size=1, num_workers=0)
    datamodule.setup("fit")
    record = landmark_records(synthetic_shards, "val")[0]
    sample = datamodule.sample(record, train=False, speaker_index={record["speaker"]: 0})
    reference = record["reference_index"]  # the clip's most closed valid mouth
    assert torch.equal(sample["reference"], torch.from_numpy(record["registered"][reference]))
    assert sample["pose"][reference].abs().max() < 1e-5, "the reference frame's relative pose is 0"
    assert sample["pose"].abs().max() > 1e-3


def test_landmark_window_longer_than_a_clip_is_padded_and_masked(synthetic_shards):
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=400, batch_size=1, num_workers=0)
    batch = first_batch(datamodule, "val")
    assert batch["mask"].shape == (1, 400) and batch["mask"][0, -1] == 0 and batch["mask"][0, 0] == 1


def test_missing_statistics_are_a_clear_error(shards_with_a_short_clip):
    datamodule = LandmarkDataModule(str(shards_with_a_short_clip), num_workers=0)
    with pytest.raises(ShardsError, match="index.json has no train-split statistics"):
        _ = datamodule.statistics


@pytest.mark.parametrize("split", ["train", "val"])
def test_render_batches_follow_the_contract(synthetic_shards, split):
    datamodule = RenderDataModule(str(synthetic_shards), batch_size=2, num_workers=0)
    shipped = first_batch(datamodule, split)
    assert shipped["reference"].dtype == shipped["target"].dtype == torch.uint8, "images cross workers as uint8"
    batch = datamodule.on_after_batch_transfer(shipped, 0)
    assert_layout(
        batch,
        {
            "reference": ((2, 3, 256, 256), torch.float32),
            "target": ((2, 3, 256, 256), torch.float32),
            "target_landmarks": ((2, 68, 3), torch.float32),
            "reference_landmarks": ((2, 68, 3), torch.float32),
            "speaker": ((2,), torch.int64),
        },
    )
    assert 0 <= batch["target"].min() and batch["target"].max() <= 1 and batch["target"].std() > 0.05
    assert ((batch["target_landmarks"][..., :2] > 0) & (batch["target_landmarks"][..., :2] < 256)).all()


def frame_of(landmarks: torch.Tensor, record: dict) -> int:
    return int(np.flatnonzero((record["landmarks"] == landmarks.numpy()).all((1, 2)))[0])


def test_the_render_reference_is_never_the_target(synthetic_shards):
    datamodule = RenderDataModule(str(synthetic_shards), batch_size=1, num_workers=0)
    datamodule.setup("fit")
    records = landmark_records(synthetic_shards, "train")
    gaps = []
    for record in records * 10:
        sample = datamodule.sample(record, train=True, speaker_index={record["speaker"]: 0})
        reference, target = (
            frame_of(sample["reference_landmarks"], record),
            frame_of(sample["target_landmarks"], record),
        )
        assert record["valid"][reference] and record["valid"][target]
        gaps.append(abs(reference - target))
    assert min(gaps) >= 5, "training pairs are at least 5 frames apart"
    assert len(set(gaps)) > 5, "and random"
    for record in landmark_records(synthetic_shards, "val"):
        sample = datamodule.sample(record, train=False, speaker_index={record["speaker"]: 0})
        reference, target = (
            frame_of(sample["reference_landmarks"], record),
            frame_of(sample["target_landmarks"], record),
        )
        assert reference == record["reference_index"], "evaluation: the most closed mouth"
        opening = face.mouth_opening(record["registered"])
        distance = np.where(record["valid"].astype(bool), np.abs(opening - opening[reference]), -1)
        assert target != reference and distance[target] == distance.max(), "against the most open frame"


def test_a_clip_too_short_for_the_gap_still_pairs_different_frames():
    valid = np.zeros(30, bool)
    valid[[10, 12]] = True  # two valid frames, 2 apart
    pairs = {training_pair(valid) for _ in range(50)}
    assert pairs == {(10, 12), (12, 10)}
    assert all(reference != target for reference, target in {training_pair(np.ones(3, bool)) for _ in range(30)})


def test_open_reference_pairs_take_an_open_mouth_to_a_closed_one():
    opening = np.abs(np.sin(np.arange(60) / 4.0))  # a mouth opening and closing over 60 frames
    valid = np.ones(60, bool)
    valid[:5] = False
    low, high = np.quantile(opening[valid], [1 / 3, 2 / 3])
    pairs = [training_pair(valid, opening, open_reference=1.0) for _ in range(200)]
    assert all(opening[reference] >= high and opening[target] <= low for reference, target in pairs)
    assert all(abs(reference - target) >= 5 and valid[reference] and valid[target] for reference, target in pairs)
    assert len(set(pairs)) > 50  # drawn, not one fixed pair
    random_pairs = [training_pair(valid, opening, open_reference=0.0) for _ in range(200)]
    assert np.mean([opening[reference] < opening[target] for reference, target in random_pairs]) > 0.3
    halfway = (training_pair(valid, opening, open_reference=0.5) for _ in range(400))
    half = [opening[reference] >= high and opening[target] <= low for reference, target in halfway]
    assert 0.45 < np.mean(half) < 0.75  # half drawn open -> closed, plus the random pairs that happen to be
    still = np.zeros(60)  # a mouth that never moves has no open-to-closed pair: random pairs instead
    assert all(reference != target for reference, target in (training_pair(valid, still, 1.0) for _ in range(20)))


class ClipIds(ShardDataModule):
    """Yields each clip's id, to see which clips a rank streams; ``keep`` limits it to some positions."""

    keep: list[int] | None = None

    def sample(self, record, train, speaker_index):
        return record["clip"]

    def usable(self, split, index):
        return self.keep


@pytest.fixture(scope="module")
def many_small_clips(tmp_path_factory) -> Path:
    """A train split of 24 small stand-in clips (id, speaker, 2 kB) spread over several LitData chunks."""
    records = [
        {"clip": f"s{n % 6}/{n:05d}", "speaker": f"s{n % 6}", "frames": 50, "payload": np.full(2000, n, np.uint8)}
        for n in range(24)
    ]
    folder = write_train_split(tmp_path_factory.mktemp("many"), records, chunk_bytes="10KB")
    assert len(json.loads((folder / "train" / "index.json").read_text())["chunks"]) >= 4
    return folder


@pytest.mark.parametrize("keep", [None, list(range(0, 24, 2))])
def test_two_ranks_stream_disjoint_clips(many_small_clips, monkeypatch, keep):
    datamodule = ClipIds(str(many_small_clips), batch_size=1, num_workers=0)
    datamodule.keep = keep
    datamodule.setup("fit")
    all_clips = datamodule.index["splits"]["train"]
    usable = set(all_clips) if keep is None else {all_clips[position] for position in keep}
    for epoch_seed in (0, 1):
        datamodule.seed = epoch_seed
        seen = []
        for rank in (0, 1):
            monkeypatch.setenv("WORLD_SIZE", "2")
            monkeypatch.setenv("GLOBAL_RANK", str(rank))
            seen.append(list(datamodule.dataset("train", train=True)))
        assert len(seen[0]) == len(seen[1]) >= 5
        assert not set(seen[0]) & set(seen[1]), "no clip streams on both ranks"
        assert set(seen[0]) | set(seen[1]) <= usable
        assert len(seen[0]) + len(seen[1]) >= len(usable) - 1, "at most one clip dropped to even out the ranks"


def test_unfinished_shards_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ShardsError, match=f"{tmp_path} is not a finished shards folder"):
        SFEDataModule(str(tmp_path), num_workers=0).setup("fit")


def test_a_training_split_too_small_for_one_batch_is_a_clear_error(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), batch_size=64, num_workers=0)
    datamodule.setup("fit")
    with pytest.raises(ShardsError, match="fewer than batch_size 64 for each of the 1 loader workers"):
        datamodule.train_dataloader()


def test_any_training_reference_draws_open_mouths_too_and_evaluation_keeps_the_closed_one(synthetic_shards):
    """``training_reference: any``: a photo may show an open mouth, so training references are drawn from every
    valid frame outside the window (open ones among them); validation keeps the most closed (comparable figures)."""
    frames = 20
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=frames, batch_size=1, num_workers=0,
                                    training_reference="any")  # fmt: skip
    datamodule.setup("fit")
    speakers = {speaker: number for number, speaker in enumerate(datamodule.speakers)}
    record = landmark_records(synthetic_shards, "train")[0]
    area = face.inner_lip_area(record["registered"])
    torch.manual_seed(0)
    drawn = []
    for _ in range(40):
        sample = datamodule.sample(record, train=True, speaker_index=speakers)
        start = window_of(sample, record)
        reference = int(np.flatnonzero((record["registered"] == sample["reference"].numpy()).all((1, 2)))[0])
        assert not start <= reference < start + frames and record["valid"][reference]
        drawn.append(area[reference])
    assert np.mean(np.array(drawn) > np.median(area)) > 0.25, "open mouths are drawn as references"
    validation = datamodule.sample(record, train=False, speaker_index=speakers)
    expected = datamodule.sample(record, train=False, speaker_index=speakers)
    assert torch.equal(validation["reference"], expected["reference"])
    assert face.inner_lip_area(validation["reference"].numpy()[None])[0] <= np.percentile(area, 10)
    with pytest.raises(ValueError, match="closed or any"):
        LandmarkDataModule(str(synthetic_shards), training_reference="open")


def test_speech_augmentation_applies_after_transfer_and_only_in_training(synthetic_shards):
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=20, batch_size=2, num_workers=0,
                                    speech_augmentation=True)  # fmt: skip
    shipped = first_batch(datamodule, "val")
    datamodule.trainer = SimpleNamespace(training=False)
    assert torch.equal(datamodule.on_after_batch_transfer(shipped, 0)["audio"], shipped["audio"])
    datamodule.trainer = SimpleNamespace(training=True)
    heard = datamodule.on_after_batch_transfer(shipped, 0)["audio"]
    assert heard.shape == shipped["audio"].shape and (heard - shipped["audio"]).abs().mean() > 0.01
    datamodule.speech_augmentation = False
    assert torch.equal(datamodule.on_after_batch_transfer(shipped, 0)["audio"], shipped["audio"])


def test_lips_closed_marks_the_bilabials_of_every_person_whatever_their_closed_gap(synthetic_corpus, synthetic_shards):
    """``lips_closed`` is relative to each clip: Face Mesh leaves a person-specific gap between closed lips, so one
    absolute threshold called the bilabials of one face open; against the generator's visemes it holds for all."""
    shares = {"bilabial": [], "open": []}
    for split in ("train", "val", "test"):
        for record in landmark_records(synthetic_shards, split):
            visemes = json.loads((synthetic_corpus / f"{record['clip']}.truth.json").read_text())["visemes"]
            closed = lips_closed(record["registered"], record["valid"].astype(bool), record["reference_index"])
            for kind in shares:
                frames = [t for t, viseme in enumerate(visemes[: record["frames"]]) if viseme == kind]
                shares[kind] += list(closed[frames])
    assert np.mean(shares["bilabial"]) > 0.7 and np.mean(shares["open"]) < 0.1, {
        k: np.mean(v) for k, v in shares.items()
    }


def test_the_closure_target_is_the_landmarks_or_the_corpus_truth_where_there_is_one(synthetic_shards):
    """The MDN's ``lips_closed`` comes from the landmarks by default; with ``closure_target: truth`` from a record's
    ``lips_together`` (the embedded corpus's articulation), and from the landmarks again where a record has none (a
    real corpus, or shards from before it). A target it does not know is refused."""
    record = landmark_records(synthetic_shards, "train")[0]
    from_landmarks = lips_closed(record["registered"], record["valid"].astype(bool), record["reference_index"])
    np.testing.assert_array_equal(closed_frames(record), from_landmarks)
    np.testing.assert_array_equal(closed_frames(record, "truth"), record["lips_together"].astype(np.float32))
    assert not np.array_equal(from_landmarks, closed_frames(record, "truth")), "the two targets differ on this clip"
    without = {k: v for k, v in record.items() if k != "lips_together"}
    for unknown in ({**record, "lips_together": np.zeros(0, np.uint8)}, without):
        np.testing.assert_array_equal(closed_frames(unknown, "truth"), from_landmarks)
    whole_clip = LandmarkDataModule(
        str(synthetic_shards), frames=record["frames"], num_workers=0, closure_target="truth"
    )
    sample = whole_clip.sample(record, False, {record["speaker"]: 0})
    np.testing.assert_array_equal(sample["lips_closed"].numpy(), record["lips_together"].astype(np.float32))
    with pytest.raises(ValueError, match="closure_target must be landmarks or truth"):
        LandmarkDataModule(str(synthetic_shards), closure_target="phones")
