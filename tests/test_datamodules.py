"""The three DataModules (datamodules/sfe.py, mdn.py, renderer.py) and their shared streaming (shards.py)."""

import pytest
import torch

from datamodules.mdn import LandmarkDataModule
from datamodules.renderer import RenderDataModule
from datamodules.sfe import SFEDataModule
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
    batch = first_batch(datamodule, split)
    assert_layout(
        batch,
        {
            "audio": ((2, 6, 20, 80), torch.float32),
            "frames": ((2, 6, 5, 3, side, side), torch.float32),
            "speaker": ((2,), torch.int64),
        },
    )
    assert 0 <= batch["frames"].min() and batch["frames"].max() <= 1 and batch["frames"].std() > 0.05
    assert 0 <= batch["audio"].min() and batch["audio"].max() <= 1
    assert batch["speaker"].max() < len(datamodule.speakers)


def test_sfe_validation_windows_are_fixed_and_training_windows_vary(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), steps=4, batch_size=1, num_workers=0, augment=False)
    datamodule.setup("fit")
    val = datamodule.dataset("val", train=False)
    assert torch.equal(val[0]["audio"], val[0]["audio"])
    train = datamodule.dataset("train", train=True)
    assert any(not torch.equal(train[0]["audio"], train[0]["audio"]) for _ in range(5))


@pytest.mark.parametrize("split", ["train", "val"])
def test_landmark_batches_follow_the_contract(synthetic_shards, split):
    batch = first_batch(LandmarkDataModule(str(synthetic_shards), frames=20, batch_size=2, num_workers=0), split)
    assert_layout(
        batch,
        {
            "audio": ((2, 20, 20, 80), torch.float32),
            "registered": ((2, 20, 68, 3), torch.float32),
            "pose": ((2, 20, 6), torch.float32),
            "reference": ((2, 68, 3), torch.float32),
            "landmarks": ((2, 20, 68, 3), torch.float32),
            "mask": ((2, 20), torch.float32),
            "speaker": ((2,), torch.int64),
        },
    )
    assert batch["mask"].sum() > 0
    interocular = (batch["reference"][:, 45] - batch["reference"][:, 36]).norm(dim=-1)
    assert torch.allclose(interocular, torch.ones(2), atol=0.15), "reference landmarks are in the canonical frame"


def test_landmark_window_longer_than_a_clip_is_padded_and_masked(synthetic_shards):
    datamodule = LandmarkDataModule(str(synthetic_shards), frames=400, batch_size=1, num_workers=0)
    batch = first_batch(datamodule, "val")
    assert batch["mask"].shape == (1, 400) and batch["mask"][0, -1] == 0 and batch["mask"][0, 0] == 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_render_batches_follow_the_contract(synthetic_shards, split):
    batch = first_batch(RenderDataModule(str(synthetic_shards), batch_size=2, num_workers=0), split)
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
    assert ((batch["target_landmarks"][..., :2] > 0) & (batch["target_landmarks"][..., :2] < 256)).all()


class ClipIds(ShardDataModule):
    """Yields each clip's id, to see which clips a rank streams."""

    def sample(self, record, train, speaker_index):
        return record["clip"]


def test_two_ranks_stream_disjoint_clips(synthetic_shards, monkeypatch):
    datamodule = ClipIds(str(synthetic_shards), batch_size=1, num_workers=0)
    datamodule.setup("fit")
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        seen.append(list(datamodule.dataset("train", train=True)))
    all_clips = set(datamodule.index["splits"]["train"])
    assert seen[0] and seen[1]
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) <= all_clips
    assert len(seen[0]) + len(seen[1]) >= len(all_clips) - 1, "at most one clip dropped to even out the ranks"


def test_unfinished_shards_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ShardsError, match=f"{tmp_path} is not a finished shards folder"):
        SFEDataModule(str(tmp_path), num_workers=0).setup("fit")


def test_a_training_split_too_small_for_one_batch_is_a_clear_error(synthetic_shards):
    datamodule = SFEDataModule(str(synthetic_shards), batch_size=64, num_workers=0)
    datamodule.setup("fit")
    with pytest.raises(ShardsError, match="fewer than batch_size 64 for each of the 1 loader workers"):
        datamodule.train_dataloader()
