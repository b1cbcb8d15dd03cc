"""One background thread that runs jobs by priority and reports their progress.

Interactive front ends (the Explorer) hand their heavy work (attribution, concept extraction, SAE
training, feature visualization) to a :class:`BackgroundWorker`, so the thread that answers the user
never waits for a model. One thread, not a pool: the jobs share one model, and a model's forward hooks
(``Model.activations``, featviz captures) are global to its modules, so two jobs running the model at
once would read each other's activations. A priority queue keeps interactive work (the selected
image's maps) ahead of long work (training an SAE); a running job is never interrupted by other work.
Closing the worker (and the interpreter's exit, which closes it) cancels the queued jobs and stops the
running one at its next progress report, so a server stopped while an SAE trains exits at once.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

#: Job states reported to progress listeners.
STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class JobProgress:
    """Where one job stands: its name, state (one of :data:`STATES`), and ``done`` of ``total`` units.

    ``total`` is 0 while the job has not said how much work it has.
    """

    task: str
    state: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 when the total is unknown, 1 once done)."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[Callable[[int, int], None]], Any] = field(compare=False)
    future: Future = field(compare=False)
    progress: JobProgress = field(compare=False)


class BackgroundWorker:
    """A daemon thread running ``fn(report)`` jobs, lowest ``priority`` first, FIFO among equals.

    Parameters
    ----------
    name
        The thread's name.
    on_progress
        ``on_progress(JobProgress)``, called (from the worker thread, or the submitting thread for
        "queued") whenever a job is queued, starts, reports progress, ends or is found cancelled.
    """

    def __init__(
        self, name: str = "workbench-worker", on_progress: Callable[[JobProgress], None] | None = None
    ):
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._on_progress = on_progress
        self._closed = False
        self.current: JobProgress | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        # End the thread before the interpreter finalizes: a daemon thread that ran torch and is torn
        # down during finalization aborts the process ("terminate called without an active exception").
        ref = weakref.ref(self)
        atexit.register(lambda: (w := ref()) is not None and w.close(wait=True))

    def submit(
        self,
        fn: Callable[[Callable[[int, int], None]], Any],
        task: str,
        priority: int = 0,
        future: Future | None = None,
    ) -> Future:
        """Queue ``fn(report)``; ``report(done, total)`` tells listeners how far it is. Returns the Future of
        its result (``future``, when given: a Future created earlier, e.g. held in a cache)."""
        if self._closed:
            raise RuntimeError("submit: the worker is closed")
        future = Future() if future is None else future
        progress = JobProgress(task)
        self._queue.put(_Job(int(priority), next(self._seq), fn, future, progress))
        self._emit(progress)
        return future

    def run_claimed(self, future: Future, fn: Callable[[Callable[[int, int], None]], Any], task: str) -> Any:
        """Run ``fn`` now, in the calling thread, as the job of a queued ``future`` (which it claims: the
        queued job is then skipped). For a job that needs the result of another job still in the queue;
        call it from the worker thread only. Returns the result (or raises what ``fn`` raised)."""
        if future.done():
            return future.result()
        if future.running() or not future.set_running_or_notify_cancel():
            raise RuntimeError(f"run_claimed: {task!r} is running elsewhere or was cancelled")
        self._execute(future, fn, JobProgress(task))
        return future.result()

    def close(self, wait: bool = False) -> None:
        """Stop: queued jobs are cancelled, the running job stops at its next progress report (a job that
        reports none runs to its end); ``wait``: until the thread has ended."""
        if self._closed:
            if wait:
                self._thread.join()
            return
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.future.cancel()
        # the sentinel (no function) sorts after every job
        self._queue.put(_Job(2**62, next(self._seq), None, Future(), JobProgress("stop")))
        if wait:
            self._thread.join()

    # ------------------------------------------------------------------ the thread
    def _emit(self, progress: JobProgress) -> None:
        if self._on_progress is not None:
            try:
                self._on_progress(progress)
            except Exception:  # noqa: BLE001 - a listener's bug must not kill the worker
                pass

    def _execute(self, future: Future, fn: Callable, progress: JobProgress) -> None:
        def report(done: int, total: int) -> None:
            if self._closed:  # the worker is closing: the job stops here (its future gets CancelledError)
                raise CancelledError(f"{progress.task}: stopped, the worker was closed")
            progress.done, progress.total = int(done), int(total)
            self._emit(progress)

        previous, self.current = self.current, progress
        progress.state = "running"
        self._emit(progress)
        try:
            result = fn(report)
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
            stopped = isinstance(err, CancelledError) and self._closed
            progress.state, progress.error = (
                "cancelled" if stopped else "failed",
                f"{type(err).__name__}: {err}",
            )
            future.set_exception(err)
        else:
            progress.state = "done"
            future.set_result(result)
        finally:
            self.current = previous
        self._emit(progress)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job.fn is None:
                return
            if job.future.done() or job.future.running():  # claimed by run_claimed, or already settled
                job.progress.state = "done"
                self._emit(job.progress)
                continue
            if not job.future.set_running_or_notify_cancel():
                job.progress.state = "cancelled"
                self._emit(job.progress)
                continue
            self._execute(job.future, job.fn, job.progress)


def gather(futures: Mapping[Any, Future]) -> Future:
    """A Future of ``{key: result}`` that completes when every future of ``futures`` has (with the first
    exception, if any)."""
    out: Future = Future()
    out.set_running_or_notify_cancel()
    items = dict(futures)
    if not items:
        out.set_result({})
        return out
    left, lock = [len(items)], threading.Lock()

    def one_done(_f: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        # a cancelled future (its worker closed) has no exception to read: it fails the gathered one
        errors = [CancelledError("a gathered job was cancelled") if f.cancelled() else f.exception()
                  for f in items.values() if f.cancelled() or f.exception() is not None]  # fmt: skip
        if errors:
            out.set_exception(errors[0])
        else:
            out.set_result({k: f.result() for k, f in items.items()})

    for f in items.values():
        f.add_done_callback(one_done)
    return out
