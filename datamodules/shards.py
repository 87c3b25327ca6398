"""What the three DataModules share: reading a shards folder and streaming its splits through LitData.

Each split is a LitData ``StreamingDataset`` of whole clips (the records of ``datamodules.preprocess``); a
stage's ``sample`` function turns a clip into one training sample (a random window in training, a fixed one
in validation and test). LitData shuffles, and splits the clips across DDP ranks and DataLoader workers.

Images cross the loader's worker processes as uint8 ``[..., 3, H, W]`` (a quarter of float32's shared memory);
the DataModule's ``on_after_batch_transfer`` turns them into float32 in [0, 1] on the training device, which is
what a LightningModule's ``training_step`` sees. Code that iterates a loader without a Trainer calls
``datamodule.on_after_batch_transfer(batch, 0)`` itself.
"""

import json
import os
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from litdata import StreamingDataLoader, StreamingDataset

from datamodules.face import decode_jpeg
from datamodules.speech_augmentation import augment_speech


class ShardsError(ValueError):
    """A shards folder that cannot be used; the message is one sentence naming it."""


class ShardsURL(str):
    """A shards folder in object storage (``s3://bucket/prefix``, also ``gs://``, ``r2://``): ``/`` joins with one
    slash, where ``Path`` would turn ``s3://bucket`` into ``s3:/bucket``. LitData streams from it; credentials and a
    custom endpoint come from the usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...)."""

    def __truediv__(self, part: str) -> "ShardsURL":
        return ShardsURL(f"{self.rstrip('/')}/{part}")


def _allow_plain_http_endpoint() -> None:
    """An S3-compatible endpoint on plain http (MinIO in a cluster, a test server): LitData 0.2.76 downloads chunks
    through obstore with its own client options, which drop obstore's ``AWS_ALLOW_HTTP``; add it back to them.
    Runs at import too, so that spawned loader workers get it."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS, "allow_http": True}


_allow_plain_http_endpoint()


def shards_location(shards: str | Path) -> Path | ShardsURL:
    """``shards`` as a local Path, or as a ShardsURL when it names a remote folder (``scheme://...``)."""
    if "://" not in str(shards):
        return Path(shards)
    _allow_plain_http_endpoint()
    return ShardsURL(shards)


def _read_remote(url: ShardsURL) -> str | None:
    """The text of a remote file through LitData's storage client; None when it does not exist."""
    from litdata.streaming.fs_provider import _get_fs_provider

    provider = _get_fs_provider(url)
    if not provider.exists(url):
        return None
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, "index.json")
        provider.download_file(url, local)
        return Path(local).read_text()


def read_index(shards: str | Path) -> dict:
    """The ``index.json`` of a finished shards folder, local or remote; ShardsError when it is missing or
    unfinished, or when remote storage cannot be reached."""
    path = shards_location(shards) / "index.json"
    try:
        text = _read_remote(path) if isinstance(path, ShardsURL) else path.read_text() if path.is_file() else None
    except Exception as error:  # botocore, google-cloud or network errors: one sentence, not a traceback
        raise ShardsError(f"{path} cannot be read ({type(error).__name__}: {error}).") from error
    if text is None:
        raise ShardsError(
            f"{shards} is not a finished shards folder (no index.json); build it with "
            f"`make data SHARDS={shards}` or point DATA at the output of `make data`."
        )
    return json.loads(text)


def window_start(length: int, span: int, valid: np.ndarray, train: bool) -> int:
    """First frame of a window of ``span`` frames in a clip of ``length``: random in training, centred otherwise,
    preferring windows whose frames are all valid (face found or short gap)."""
    starts = np.arange(max(length - span, 0) + 1)
    invalid_before = np.concatenate([[0], np.cumsum(~valid)])  # [length + 1]: invalid frames before each index
    all_valid = invalid_before[np.minimum(starts + span, length)] == invalid_before[starts]
    candidates = starts[all_valid] if all_valid.any() else starts
    if train:
        return int(candidates[torch.randint(len(candidates), ()).item()])
    return int(candidates[len(candidates) // 2])


def decode_frames(record: dict, kind: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``[*indices.shape, H, W, 3]`` uint8 of a clip record; ``kind`` is ``face`` (256) or ``mouth`` (96).
    Each distinct frame is decoded once."""
    blob, offsets = record[f"{kind}_jpeg"], record[f"{kind}_offsets"]
    flat = np.asarray(indices).reshape(-1).tolist()
    decoded = {index: decode_jpeg(blob, offsets, index) for index in set(flat)}
    images = np.stack([decoded[index] for index in flat])
    return images.reshape(*np.shape(indices), *images.shape[1:])


def to_image_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> contiguous uint8 ``[..., 3, H, W]``, as images travel from loader workers."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(frames, -1, -3)))


class ShardDataModule(LightningDataModule):
    """Streams the train, val and test splits of a shards folder, each clip turned into a sample by
    :meth:`sample` (a subclass's); the batch entries named in ``image_keys`` travel as uint8 and become float32
    in [0, 1] in :meth:`on_after_batch_transfer`."""

    image_keys: tuple[str, ...] = ()

    def __init__(
        self, shards: str, batch_size: int, num_workers: int, seed: int = 0, speech_augmentation: bool = False
    ):
        super().__init__()
        self.shards = shards_location(shards)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.speech_augmentation = speech_augmentation
        self.index: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        self.index = read_index(self.shards)

    @property
    def speakers(self) -> list[str]:
        """All speakers of the shards, sorted: a sample's ``speaker`` is an index into this list."""
        return (self.index or read_index(self.shards))["speakers"]

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        raise NotImplementedError

    def usable(self, split: str, index: dict) -> list[int] | None:
        """Positions in ``index["splits"][split]`` of the clips this stage samples; None for all of them."""
        return None

    @property
    def training(self) -> bool:
        """Whether a Trainer is fitting now (augmentation applies only then)."""
        return self.trainer is not None and self.trainer.training

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 images of ``image_keys`` -> float32 in [0, 1], on the device the batch was moved to; the ``audio``
        windows heard through a random microphone, room and codec when a Trainer is fitting and
        ``speech_augmentation`` is on (``datamodules.speech_augmentation``)."""
        batch = {
            key: value.float().div_(255.0) if key in self.image_keys and value.dtype == torch.uint8 else value
            for key, value in batch.items()
        }
        if self.speech_augmentation and self.training and "audio" in batch:
            batch["audio"] = augment_speech(batch["audio"])
        return batch

    def dataset(self, split: str, train: bool) -> StreamingDataset:
        """The LitData dataset of ``split``; ShardsError when the split has no clips."""
        index = self.index or read_index(self.shards)
        if not index["splits"].get(split):
            raise ShardsError(f"{self.shards} has no {split} clips; preprocess a corpus with more speakers.")
        speaker_index = {speaker: number for number, speaker in enumerate(index["speakers"])}
        dataset = StreamingDataset(str(self.shards / split), shuffle=train, drop_last=train, seed=self.seed)
        usable = self.usable(split, index)
        if usable is not None and len(usable) < len(index["splits"][split]):
            dataset = dataset.subset(usable)  # a deep copy: taken before the transform, which holds this DataModule
        dataset.transform = partial(self.sample, train=train, speaker_index=speaker_index)
        return dataset

    def loader(self, split: str, train: bool) -> StreamingDataLoader:
        """A loader of ``split`` with training (random windows, shuffled) or evaluation behaviour.

        LitData deals clips to every rank and loader worker and drops each one's last partial training batch;
        a training loader left with no batch at all is an error that says why, not a silent empty epoch.
        """
        loader = StreamingDataLoader(
            self.dataset(split, train),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=train,
            persistent_workers=self.num_workers > 0,
        )
        if train and len(loader) == 0:
            index = self.index or read_index(self.shards)
            usable = self.usable(split, index)
            clips = len(index["splits"][split]) if usable is None else len(usable)
            raise ShardsError(
                f"{self.shards} has {clips} usable {split} clips, fewer than batch_size {self.batch_size} for each "
                f"of the {max(self.num_workers, 1)} loader workers on each device; "
                "lower data.batch_size or num_workers."
            )
        return loader

    def train_dataloader(self) -> StreamingDataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> StreamingDataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self.loader("test", train=False)
