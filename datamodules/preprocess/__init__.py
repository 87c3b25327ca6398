"""Preprocessing: the clips of a corpus -> per-clip records -> LitData shards, one dataset per split.

``SHARDS/`` holds:

    workers.log         what MediaPipe's native code printed in the worker processes
    manifest.jsonl      one line per clip: clip, speaker, split, status (ok|skipped), reason, frames, face_ratio
    clips/<clip>.pkl    the processed record of each usable clip: what a rerun does not redo
    clips/<clip>.sums.npz  its share of the train-split statistics (``datamodules.statistics``)
    train/ val/ test/   LitData datasets (``litdata.optimize``), one sample per clip (``RECORD_KEYS``)
    index.json          speakers, the clip ids of each split, each clip's frame count (``clip_frames``), the
                        train-split ``statistics``, the data-contract constants; written last

Clips are processed in parallel (``workers`` processes; a worker that dies, killed for memory or by a crash
in native code, costs only its clip, skipped with the reason) and each record is written atomically, so an
interrupted run loses at most the clips in flight; a rerun processes only the clips without a manifest line
and repackages only the splits whose clip list changed. A clip whose split changed (another ``val_fraction``)
is re-split from its stored record, without running Face Mesh again. A corrupt or truncated video, a video
without audio, a clip shorter than 1 s, silent audio or a clip without a face (in fewer than 80% of its frames)
is skipped with its reason in the manifest; one bad clip never stops the run.
"""

from datamodules.preprocess.cli import main
from datamodules.preprocess.clip import RECORD_KEYS, ClipSkipped, process_clip
from datamodules.preprocess.packaging import interleave_speakers, preprocess, read_manifest

__all__ = [
    "RECORD_KEYS",
    "ClipSkipped",
    "interleave_speakers",
    "main",
    "preprocess",
    "process_clip",
    "read_manifest",
]
