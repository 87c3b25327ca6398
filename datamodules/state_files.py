"""State files (clip records, manifests, indexes, run records) are written whole or not at all: an interrupted
run leaves the old file or none, never a cut one that the next run cannot read."""

import os
from pathlib import Path


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Writes ``data`` to a hidden partial file beside ``path``, flushes it to disk, then renames it to ``path``."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
