"""OpenCV and torch held to one thread for a block: for a worker that is one job on one core, where their own thread
pools only add CPU time (preprocessing's clips, generation's frames)."""

import contextlib
from collections.abc import Iterator

import cv2
import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """OpenCV and torch on one thread each inside the block (process-wide: every thread's operations then run on the
    thread that calls them); their thread counts are restored on leaving."""
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)
