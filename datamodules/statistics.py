"""Train-split statistics for ``index.json``: mean and std of the registered landmarks and of the relative pose.

Models normalise with them (linked from ``LandmarkDataModule.statistics``). They are accumulated clip by clip
from per-clip sums (``clips/<clip>.sums.npz`` beside each record, written while packaging reads the records
anyway), so the corpus is never held in memory.
"""

import io
import pickle
from pathlib import Path

import numpy as np

from datamodules import face
from datamodules.state_files import write_atomically

STD_FLOOR = 1e-6  # stds are floored so that a model can always divide by them


def clip_sums(record: dict) -> dict[str, np.ndarray]:
    """One clip's share over its valid frames: the frame count and the float64 sums and sums of squares of the
    registered landmarks ``[68, 3]`` and of the pose relative to the clip's reference frame ``[6]``."""
    valid = record["valid"].astype(bool)
    registered = record["registered"][valid].astype(np.float64)
    relative = face.relative_pose(record["pose"][valid], record["pose"][record["reference_index"]]).astype(np.float64)
    return {
        "count": np.array(valid.sum(), np.int64),
        "registered_sum": registered.sum(0),
        "registered_squares": (registered**2).sum(0),
        "pose_sum": relative.sum(0),
        "pose_squares": (relative**2).sum(0),
    }


def sums_path(record_path: Path) -> Path:
    """Where the sums of the record at ``record_path`` (``<clip>.pkl``) are kept: ``<clip>.sums.npz``."""
    return record_path.with_suffix(".sums.npz")


def store_sums(record_path: Path, record: dict) -> dict[str, np.ndarray]:
    """Writes the :func:`clip_sums` of ``record`` beside it (atomically) and returns them."""
    sums = clip_sums(record)
    buffer = io.BytesIO()
    np.savez(buffer, **sums)
    write_atomically(sums_path(record_path), buffer.getvalue())
    return sums


def read_record_storing_sums(path: str) -> dict:
    """Packaging's reader: the record at ``path``, its sums stored on the way."""
    with open(path, "rb") as stream:
        record = pickle.load(stream)
    store_sums(Path(path), record)
    return record


def train_statistics(record_paths: list[Path]) -> dict | None:
    """``{"registered": {"mean": [68][3], "std": [68][3]}, "relative_pose": {"mean": [6], "std": [6]}}`` over the
    valid frames of the records at ``record_paths`` (relative pose: each frame's pose relative to its clip's
    reference frame, ``face.relative_pose``); None when there are none. Sums missing or older than their
    record are computed from it."""
    totals: dict[str, np.ndarray] = {}
    for record_path in record_paths:
        path = sums_path(record_path)
        if path.exists() and path.stat().st_mtime_ns >= record_path.stat().st_mtime_ns:
            with np.load(path) as stored:
                sums = {key: stored[key] for key in stored.files}
        else:
            with open(record_path, "rb") as stream:
                sums = store_sums(record_path, pickle.load(stream))
        for key, value in sums.items():
            totals[key] = totals.get(key, 0) + value
    if not totals or totals["count"] == 0:
        return None

    def moments(name: str) -> dict[str, list]:
        mean = totals[f"{name}_sum"] / totals["count"]
        std = np.sqrt(np.maximum(totals[f"{name}_squares"] / totals["count"] - mean**2, 0.0))
        return {"mean": mean.round(7).tolist(), "std": np.maximum(std, STD_FLOOR).round(7).tolist()}

    return {"registered": moments("registered"), "relative_pose": moments("pose")}
