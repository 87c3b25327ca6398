"""Shared fixtures, built once per test session: the tiny corpus every data test starts from, tiny checkpoints."""

import uuid
from pathlib import Path

import pytest

from datamodules.synthetic import generate_corpus

# The session's corpus: 4 speakers (2 of them test speakers) x 2 clips x 2 s, LRS3 layout, 256 px frames.
SESSION_CORPUS = {"layout": "lrs3", "speakers": 4, "clips": 2, "seconds": 2.0, "seed": 0, "size": 256}


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """The root of a small generated corpus (SESSION_CORPUS) with a ``.truth.json`` sidecar per clip."""
    return generate_corpus(tmp_path_factory.mktemp("corpus") / "synthetic", **SESSION_CORPUS, progress=False)


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_corpus, tmp_path_factory) -> Path:
    """The session corpus preprocessed into shards (train, val and test splits by speaker)."""
    from datamodules.preprocess import preprocess

    shards = tmp_path_factory.mktemp("shards") / "synthetic"
    preprocess(synthetic_corpus, "lrs3", shards, workers=2, progress=False)
    return shards


@pytest.fixture(scope="session")
def embedded_shards(tmp_path_factory) -> Path:
    """The embedded default corpus (what `make data` builds: 8 speakers x 6 clips x 4 s) as shards."""
    from datamodules.preprocess import preprocess
    from datamodules.synthetic import ensure_default_corpus

    root = tmp_path_factory.mktemp("embedded")
    shards = root / "shards"
    preprocess(ensure_default_corpus(root / "corpus"), "lrs3", shards, workers=2, progress=False)
    return shards


@pytest.fixture
def s3_endpoint(monkeypatch):
    """An S3 server on 127.0.0.1 (moto in server mode: the real protocol, not a mock of the client) and the
    environment that boto3, LitData and obstore read its address from."""
    from moto.server import ThreadedMotoServer

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


@pytest.fixture
def s3_shards(synthetic_shards, s3_endpoint) -> str:
    """The session's shards uploaded to a fresh bucket of the S3 test server: their ``s3://`` URL."""
    import boto3

    bucket = f"shards-{uuid.uuid4().hex[:12]}"  # a fresh URL: LitData's local chunk cache is keyed by it
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    for path in synthetic_shards.rglob("*"):
        relative = path.relative_to(synthetic_shards)
        if path.is_file() and relative.parts[0] in ("index.json", "train", "val", "test"):
            client.upload_file(str(path), bucket, f"corpora/synthetic/{relative.as_posix()}")
    return f"s3://{bucket}/corpora/synthetic"


def _save_checkpoint(model, path: Path) -> Path:
    """Writes ``model``'s checkpoint as a Trainer does (hooks included, so the stage is stamped)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """Run folders ``<stage>/checkpoints/last.ckpt`` of a tiny MDN (outputs near the canonical face: small
    statistics) and a tiny renderer, both at random initialisation, written by the real LightningModules."""
    import numpy as np
    import torch

    from datamodules.face import CANONICAL_FACE
    from lightning_modules.mdn import LandmarkMDN
    from lightning_modules.renderer import FaceRenderer
    from tests.mdn_data import TINY_SFE

    torch.manual_seed(0)
    statistics = {
        "registered": {"mean": CANONICAL_FACE.tolist(), "std": np.full((68, 3), 0.01).tolist()},
        "relative_pose": {"mean": [0.0] * 6, "std": [0.01] * 6},
    }
    root = tmp_path_factory.mktemp("runs")
    mdn = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=statistics, reference_dim=8, hidden_dim=32)
    _save_checkpoint(mdn, root / "mdn" / "checkpoints" / "last.ckpt")
    _save_checkpoint(FaceRenderer(width=8), root / "renderer" / "checkpoints" / "last.ckpt")
    return {"mdn": root / "mdn", "renderer": root / "renderer"}
