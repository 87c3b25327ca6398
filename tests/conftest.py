"""Shared fixtures, built once per test session: the tiny corpus every data test starts from."""

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
