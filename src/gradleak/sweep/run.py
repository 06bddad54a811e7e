"""Executors for sweep cells and the resumable driver.

The driver is the only writer of the journal: executors run cells (in this process, in
worker processes, or as Ray tasks) and yield records as they finish; each record is appended
and fsync'ed at once. Cells whose id is already in the journal are skipped, so killing a
sweep at any moment and starting it again loses nothing and repeats nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import GradleakError
from ..registry import Registry
from .cell import run_cell
from .grid import Cell
from .journal import Journal

RESULTS_FILE = "results.jsonl"
CELLS_DIR = "cells"


@dataclass(frozen=True)
class ExecutorOptions:
    """How to spread cells over compute."""

    workers: int = 1  # parallel cells; 1 = run in this process (no start-up cost)
    address: str | None = None  # ray: cluster address (None = start a local Ray)
    threads: int = 1  # torch threads per cell when workers > 1 (avoids oversubscribing cores)


Executor = Callable[[Sequence[Cell], Path, ExecutorOptions], Iterator[dict[str, Any]]]
EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register("local", description="this machine: in-process (workers=1) or a process pool")
def _local(cells: Sequence[Cell], cells_dir: Path, options: ExecutorOptions) -> Iterator[dict[str, Any]]:
    if options.workers <= 1:
        for cell in cells:
            yield run_cell(cell, cells_dir=cells_dir)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
        futures = [pool.submit(run_cell, cell, cells_dir=cells_dir, threads=options.threads) for cell in cells]
        for future in as_completed(futures):
            yield future.result()


@EXECUTORS.register("ray", description="Ray tasks: a local Ray, or a cluster given by --address")
def _ray(cells: Sequence[Cell], cells_dir: Path, options: ExecutorOptions) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise GradleakError("--executor ray needs Ray: pip install 'gradleak[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
        if options.address:
            kwargs["address"] = options.address
        else:
            kwargs["num_cpus"] = max(1, options.workers)
        ray.init(**kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=1)(run_cell)
        pending = [task.remote(cell, cells_dir=str(cells_dir), threads=options.threads) for cell in cells]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def _clean_stale(cells_dir: Path) -> None:
    """Remove temporary cell directories left by a killed run (atomic_directory's .tmp)."""
    for tmp in cells_dir.glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def run_sweep(
    cells: Sequence[Cell],
    *,
    out: str | Path,
    executor: str = "local",
    options: ExecutorOptions = ExecutorOptions(),
    on_record: Callable[[dict[str, Any]], None] = lambda _r: None,
) -> Journal:
    """Run the cells of ``cells`` not yet in ``out/results.jsonl``; returns the journal."""
    run = EXECUTORS.get(executor)
    if options.workers < 1:
        raise GradleakError(f"--workers must be >= 1, got {options.workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GradleakError(f"--out {out} exists and is not a directory")
    cells_dir = out / CELLS_DIR
    if cells_dir.exists() and not cells_dir.is_dir():
        raise GradleakError(f"{cells_dir} is not a directory; a sweep keeps its cells there")
    journal = Journal(out / RESULTS_FILE)  # a corrupt journal fails before anything is created
    cells_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(cells_dir)
    done = journal.done
    todo, seen = [], set()
    for cell in cells:
        if cell.id not in done and cell.id not in seen:
            todo.append(cell)
            seen.add(cell.id)
    for record in run(todo, cells_dir, options):
        journal.append(record)
        on_record(record)
    return journal
