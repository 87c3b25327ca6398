"""Frames rendered in parallel, one worker thread per core, each running its frames on one thread.

A 256x256 frame's refinement is too small for a 2-core CPU to split well: on one thread it takes nearly as long
as on two (docs/fidelity.md, Speed). Rendering two frames at once, each on its own core, nearly halves the time per
frame. The work releases Python's lock (ONNX Runtime, torch, OpenCV), so threads suffice; the frames come back in
order, and each is computed exactly as one worker alone computes it.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch

from datamodules.threads import one_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


def default_workers() -> int:
    """One worker per core that torch would use (its intra-op thread count)."""
    return torch.get_num_threads()


def one_thread_per_worker(workers: int) -> AbstractContextManager:
    """With more than one worker, torch's and OpenCV's operations run on the calling thread alone (the workers share
    the cores instead: ``datamodules.threads.one_thread``); with one, they keep their thread pools."""
    return one_thread() if workers > 1 else nullcontext()


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int) -> Iterator[Result]:
    """``function(item)`` for each of ``items``, in order, computed by ``workers`` threads (in the caller's thread
    when ``workers`` is 1); ``items`` is read only a few items ahead of the results taken (memory stays bounded)."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="render") as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
