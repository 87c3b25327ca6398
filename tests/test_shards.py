"""Shards folders in object storage (datamodules/shards.py): `DATA=s3://bucket/prefix` against a real S3 protocol
server on the loopback interface (moto in server mode), not a mock of the client."""

import pytest

from datamodules.shards import ShardDataModule, ShardsError, read_index


class ClipFacts(ShardDataModule):
    """The smallest stage DataModule: a clip's id, speaker and length, enough to compare two sources."""

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        return {"clip": record["clip"], "speaker": speaker_index[record["speaker"]], "frames": record["frames"]}


def test_a_datamodule_streams_shards_from_s3(synthetic_shards, s3_shards):
    url = s3_shards
    bucket = url.removeprefix("s3://").split("/")[0]

    assert read_index(url) == read_index(synthetic_shards)
    remote, local = ClipFacts(url, batch_size=2, num_workers=0), ClipFacts(str(synthetic_shards), 2, 0)
    remote.setup("fit")
    local.setup("fit")
    assert str(remote.shards) == url and str(remote.shards / "test") == f"{url}/test", "the URL keeps its //"

    def contents(datamodule: ClipFacts, split: str) -> list[list[tuple[str, int]]]:
        loader = datamodule.loader(split, train=False)
        return [[(clip, int(n)) for clip, n in zip(batch["clip"], batch["frames"], strict=True)] for batch in loader]

    for split in ("train", "val", "test"):
        if read_index(url)["splits"][split]:
            assert contents(remote, split) == contents(local, split), split

    with pytest.raises(ShardsError, match=f"s3://{bucket}/elsewhere is not a finished shards folder"):
        read_index(f"s3://{bucket}/elsewhere")
