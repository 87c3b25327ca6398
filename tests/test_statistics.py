"""Train-split statistics in index.json (datamodules/statistics.py), checked against numpy on the session shards."""

import json
import pickle

import numpy as np

from datamodules import face
from datamodules.statistics import train_statistics


def train_records(shards):
    index = json.loads((shards / "index.json").read_text())
    return index, [pickle.loads((shards / "clips" / f"{clip}.pkl").read_bytes()) for clip in index["splits"]["train"]]


def test_index_statistics_match_numpy_over_the_train_split(synthetic_shards):
    index, records = train_records(synthetic_shards)
    assert len(records) >= 2
    valid = [record["valid"].astype(bool) for record in records]
    registered = np.concatenate([record["registered"][mask] for record, mask in zip(records, valid, strict=True)])
    relative = np.concatenate(
        [
            face.relative_pose(record["pose"][mask], record["pose"][record["reference_index"]])
            for record, mask in zip(records, valid, strict=True)
        ]
    )
    statistics = index["statistics"]
    assert np.array(statistics["registered"]["mean"]).shape == (68, 3)
    assert np.array(statistics["relative_pose"]["std"]).shape == (6,)
    assert np.allclose(statistics["registered"]["mean"], registered.mean(0), atol=1e-5)
    assert np.allclose(statistics["registered"]["std"], registered.std(0), atol=1e-5)
    assert np.allclose(statistics["relative_pose"]["mean"], relative.mean(0), atol=1e-5)
    assert np.allclose(statistics["relative_pose"]["std"], relative.std(0), atol=1e-5)
    assert np.array(statistics["relative_pose"]["std"]).min() > 1e-4, "the synthetic heads move"
    other = [clip for split in ("val", "test") for clip in index["splits"][split]]
    with_others = train_statistics([synthetic_shards / "clips" / f"{clip}.pkl" for clip in other])
    assert not np.allclose(with_others["registered"]["mean"], statistics["registered"]["mean"], atol=1e-5), (
        "only the train split counts"
    )


def test_missing_or_stale_sums_are_recomputed_from_the_record(synthetic_shards, tmp_path):
    index, records = train_records(synthetic_shards)
    paths = []
    for record in records:  # a copy of the train records without their sums
        path = tmp_path / "clips" / f"{record['clip']}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(record))
        paths.append(path)
    assert train_statistics(paths) == index["statistics"]
    assert all(path.with_suffix(".sums.npz").exists() for path in paths)
    changed = {**records[0], "registered": records[0]["registered"] + 1.0}
    paths[0].write_bytes(pickle.dumps(changed))
    assert train_statistics(paths)["registered"]["mean"] != index["statistics"]["registered"]["mean"]
    assert train_statistics([]) is None
