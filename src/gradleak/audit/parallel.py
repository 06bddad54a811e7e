"""Independent audit cells on every core: worker processes with one torch thread each.

The cells of the attack battery ((attack, batch size, seed) runs) share nothing: each seeds its
own generator from its seed and reads one saved observation. So they can run in separate
processes and give exactly what the sequential loop gives (the audit's small models already run
on one thread sequentially; a test checks the equality). Workers are *spawned* (a fork of a
process that has started torch's thread pools can deadlock) and report finished iterations
through a queue, which the parent feeds into the one progress bar.

The payloads are the toolkit's own objects passed between its own processes, never a file a
user handed over.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

Job = tuple[Callable[..., Any], tuple[Any, ...]]  # (picklable top-level function, arguments)

_QUEUE: Any = None  # the worker's progress queue (set by _init)
_JOB: int = -1  # index of the job the worker runs now
#: ``--plugin`` targets loaded in this process; workers load them too (a spawned process starts
#: with gradleak's own registrations only)
PLUGINS: list[str] = []


def builtin(name: str, registry: Any) -> bool:
    """Whether registry entry ``name`` comes from gradleak itself (so a fresh worker has it)."""
    entry = registry.get(name.split(":")[0])
    origin = getattr(entry, "__module__", None) or getattr(getattr(entry, "load", None), "__module__", "")
    return str(origin).startswith("gradleak.")


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init(progress_queue: Any, plugins: list[str]) -> None:
    global _QUEUE
    import torch

    torch.set_num_threads(1)
    _QUEUE = progress_queue
    if plugins:
        from ..commands.audit import load_plugin

        for target in plugins:
            load_plugin(target)


def worker_progress(n: int) -> None:
    """``advance`` inside a worker: tell the parent that ``n`` more iterations of this job ran."""
    if _QUEUE is not None and n > 0:
        _QUEUE.put((_JOB, n))


def _call(index: int, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    global _JOB
    _JOB = index
    return function(*args, progress=worker_progress)


def run_jobs(jobs: Sequence[Job], *, workers: int, advance: Callable[[int, int], None]) -> list[Any]:
    """Run every job (``function(*args, progress=...)``), in ``workers`` processes when > 1.

    ``advance(job, n)``: n more iterations of job ``job`` finished. Results come back in the
    jobs' order. An exception in a job is re-raised here (jobs catch what they may survive).
    """
    if workers <= 1 or len(jobs) <= 1:
        return [function(*args, progress=lambda n, i=i: advance(i, n)) for i, (function, args) in enumerate(jobs)]
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    results: list[Any] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init,
                             initargs=(progress_queue, list(PLUGINS))) as pool:
        futures: dict[Future, int] = {pool.submit(_call, i, f, a): i for i, (f, a) in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, advance)
            for future in done:
                results[futures[future]] = future.result()
        _drain(progress_queue, advance)
    return results


def _drain(progress_queue: Any, advance: Callable[[int, int], None]) -> None:
    while True:
        try:
            job, n = progress_queue.get_nowait()
        except queue_module.Empty:
            return
        advance(job, n)
