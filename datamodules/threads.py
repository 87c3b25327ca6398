"""OpenCV and torch held to one thread for a block: for a worker that is one job on one core, where their own thread
pools only add CPU time (preprocessing's clips, generation's frames)."""

import contextlib
import threading
from collections.abc import Iterator

import cv2
import torch

_lock = threading.Lock()
_holders = 0  # blocks inside one_thread now, in any thread
_saved: tuple[int, int] = (0, 0)  # the thread counts from before the first of them


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """OpenCV and torch on one thread each inside the block (process-wide: every thread's operations then run on the
    thread that calls them). The counts from before are restored when the last block open in any thread ends, so
    blocks may overlap (two generations at once) and nest."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = cv2.getNumThreads(), torch.get_num_threads()
            cv2.setNumThreads(1)
            torch.set_num_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                cv2.setNumThreads(_saved[0])
                torch.set_num_threads(_saved[1])
