"""A process pool that survives the death of a worker: each worker has its own pipe and runs one job at a
time, so when one is killed (the OOM killer, a segfault in native code) the pool knows which job killed it,
reports that job as failed with the reason and starts a new worker; the other jobs go on.

``multiprocessing.Pool`` waits forever for the result of a killed worker, and ``ProcessPoolExecutor`` fails
every job in flight without saying which one killed it: neither fits a corpus of millions of clips.
"""

import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any


def _serve(connection: Connection, function: Callable, initializer: Callable | None, initargs: tuple) -> None:
    """Worker loop: run ``function`` on each job received until the parent sends None or goes away."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        connection.send(function(job))


def death_reason(exitcode: int | None) -> str:
    """Why a worker ended, in words: the signal that killed it, or its exit status."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = "out of memory?" if name == "SIGKILL" else "a crash in native code?"
        return f"the worker process died while processing it ({name}; {cause})"
    return f"the worker process exited while processing it (status {exitcode})"


class _Worker:
    """One spawned worker process, its end of the pipe, and the job it is running (None when idle)."""

    def __init__(self, context, function: Callable, initializer: Callable | None, initargs: tuple):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, function, initializer, initargs), daemon=True)
        self.process.start()
        child.close()
        self.job: Any = None

    def close(self) -> None:
        """Asks an idle worker to stop; a busy or stuck one is terminated."""
        if self.job is None and self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.connection.close()


def imap_surviving(
    function: Callable, jobs: Iterable, workers: int, initializer: Callable | None = None, initargs: tuple = ()
) -> Iterator[tuple[Any, Any, str | None]]:
    """Runs ``function(job)`` for every job in ``workers`` spawned processes; yields ``(job, result, None)`` as
    jobs finish, or ``(job, None, reason)`` for a job whose worker died. ``function`` and the jobs must be
    picklable; an exception inside ``function`` is the caller's to catch there (it ends the worker like a death).
    """
    if workers < 1:
        raise ValueError(f"imap_surviving needs at least 1 worker, got {workers}")
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)[::-1]
    start = (context, function, initializer, initargs)
    pool = [_Worker(*start) for _ in range(min(workers, len(pending)))]
    try:
        while pending or any(worker.job is not None for worker in pool):
            for number, worker in enumerate(pool):
                if worker.job is None and pending:
                    if not worker.process.is_alive():
                        worker.close()
                        pool[number] = worker = _Worker(*start)
                    worker.job = pending.pop()
                    worker.connection.send(worker.job)
            busy = [worker for worker in pool if worker.job is not None]
            wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy])
            for worker in pool:
                if worker.job is None:
                    continue
                result, reason = None, None
                if worker.connection.poll():
                    try:
                        result = worker.connection.recv()
                    except (EOFError, OSError):
                        worker.process.join()
                        reason = death_reason(worker.process.exitcode)
                elif not worker.process.is_alive():
                    worker.process.join()
                    reason = death_reason(worker.process.exitcode)
                else:
                    continue
                job, worker.job = worker.job, None
                yield job, result, reason  # a dead worker is replaced when there is a job for it
    finally:
        for worker in pool:
            worker.close()
