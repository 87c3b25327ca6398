"""Shards folders in object storage (datamodules/shards.py): `DATA=s3://bucket/prefix` against a real S3 protocol
server on the loopback interface (moto in server mode), not a mock of the client."""

import uuid

import boto3
import pytest
from moto.server import ThreadedMotoServer

from datamodules.shards import ShardDataModule, ShardsError, read_index


class ClipFacts(ShardDataModule):
    """The smallest stage DataModule: a clip's id, speaker and length, enough to compare two sources."""

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        return {"clip": record["clip"], "speaker": speaker_index[record["speaker"]], "frames": record["frames"]}


@pytest.fixture
def s3_endpoint(monkeypatch):
    """An S3 server on 127.0.0.1 and the environment that boto3, LitData and obstore read its address from."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    environment = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",  # obstore (LitData's chunk downloads) refuses a plain-http endpoint without it
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield environment["AWS_ENDPOINT_URL"]
    server.stop()


def test_a_datamodule_streams_shards_from_s3(synthetic_shards, s3_endpoint):
    bucket = f"shards-{uuid.uuid4().hex[:12]}"  # a fresh URL: LitData's local chunk cache is keyed by it
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    for path in synthetic_shards.rglob("*"):
        relative = path.relative_to(synthetic_shards)
        if path.is_file() and relative.parts[0] in ("index.json", "train", "val", "test"):
            client.upload_file(str(path), bucket, f"corpora/synthetic/{relative.as_posix()}")
    url = f"s3://{bucket}/corpora/synthetic"

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
