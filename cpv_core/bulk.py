"""Many small file operations spread over this machine's cores.

Walking, hashing and copying 200 000 small files is one system call after
another; in threads they queue on the interpreter lock (measured: two threads
copying 200 000 files of 512 bytes took 5x longer than one), so they are
spread over worker processes instead, each given a chunk of a few thousand
files. Below :data:`MIN_PARALLEL_ITEMS` items the work runs in this process:
starting the workers would cost more than it saves.

The workers come from a ``forkserver`` (never ``fork``: a background thread
of the parent may hold a lock at that moment) and are kept for the rest of
the process, so a command that walks, hashes and copies starts them once.
A worker runs only module-level functions of cpv given plain values; a
killed parent takes its workers with it (:func:`exit_with_parent`),
and whatever they wrote is settled like any interrupted write (the caller's
journal or temporary names).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

from cpv_core.errors import ConfigError
from cpv_core.trust import visible

T = TypeVar("T")
R = TypeVar("R")

#: fewer items than this run in this process
MIN_PARALLEL_ITEMS = 5000
#: items handed to a worker at a time (enough to make a chunk's overhead negligible,
#: few enough that both workers stay busy to the end)
CHUNK_ITEMS = 2000
#: ``CPV_WORKERS``: how many worker processes (default: the CPUs this process may use;
#: 1 turns the workers off)
WORKERS_ENV = "CPV_WORKERS"

_pool: Executor | None = None
_pool_lock = threading.Lock()


def worker_count() -> int:
    """The number of worker processes bulk work uses (``CPV_WORKERS``, else the usable CPUs, at most 8)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= 64:
            raise ConfigError(
                f"{WORKERS_ENV}={visible(raw)} is not a number of worker processes between 1 and 64",
                fix=f"set e.g. {WORKERS_ENV}=2 (1 keeps every file operation in the cpv process), or unset it for one per CPU",
            )
        return int(raw)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _executor() -> Executor:
    global _pool
    with _pool_lock:
        if _pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("forkserver")
            # the server imports the workers' modules once; each worker is then a quick fork of it
            context.set_forkserver_preload(["cpv_core.plugin.sources", "cpv_plugins.dvc.bulk_files", "cpv_plugins.transports.local"])
            _pool = ProcessPoolExecutor(worker_count(), mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),))
            atexit.register(shutdown)
        return _pool


def exit_with_parent(parent: int) -> None:
    """In a worker: exit as soon as cpv process ``parent`` is gone (killed, or a zombie
    nobody reaped yet). Nothing else would end it: each worker holds the write end of
    both the job queue and the forkserver's liveness pipe, so neither ever sees the end
    of its input."""
    born = _started(parent)

    def watch() -> None:
        while _started(parent) == born:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="cpv-exit-with-parent").start()


def _started(pid: int) -> str | None:
    """When process ``pid`` started (its identity, unlike a reusable pid); None once it has
    exited. Where there is no /proc, only whether the pid exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else fields[19].decode()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return "alive"


def shutdown() -> None:
    """Stop the worker processes (at exit; also after a worker died, so the next call starts new ones)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def parallel(count: int) -> bool:
    """Whether ``count`` items are worth the worker processes."""
    return count >= MIN_PARALLEL_ITEMS and worker_count() > 1


def chunks(items: Sequence[T], size: int | None = None) -> list[Sequence[T]]:
    """``items`` cut in consecutive slices of at most ``size`` (default :data:`CHUNK_ITEMS`)."""
    step = size or CHUNK_ITEMS
    return [items[i : i + step] for i in range(0, len(items), step)]


def threaded(fn: Callable[[T], object], items: Sequence[T], threads: int) -> None:
    """``fn(item)`` for every item on ``threads`` threads (I/O: the calls wait on the network),
    at most :data:`CHUNK_ITEMS` submitted at a time: ``ThreadPoolExecutor.map`` makes every
    future up front, about 2 KB each, 400 MB for a data set of 200 000 files. The first
    exception stops the rest and is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items)))) as pool:
        for part in chunks(items):
            for _ in pool.map(fn, part):
                pass


def map_chunks(
    fn: Callable[..., R], items: Sequence[T], *args: Any, on_done: Callable[[Sequence[T], R], object] | None = None
) -> Iterator[R]:
    """``fn(chunk, *args)`` for consecutive chunks of ``items``, in order: on the worker
    processes when there are enough items, else here. ``fn`` must be a module-level
    function and ``args`` plain values (they are sent to another process).
    ``on_done(chunk, result)`` runs here as each chunk finishes (progress)."""
    parts = chunks(items)
    if not parallel(len(items)):
        for part in parts:
            result = fn(part, *args)
            if on_done is not None:
                on_done(part, result)
            yield result
        return
    from concurrent.futures.process import BrokenProcessPool

    try:
        futures = [_executor().submit(fn, part, *args) for part in parts]
        try:
            for part, future in zip(parts, futures, strict=True):
                result = future.result()
                if on_done is not None:
                    on_done(part, result)
                yield result
        finally:
            for future in futures:
                future.cancel()
    except BrokenProcessPool:
        shutdown()  # a worker was killed: the next call starts new ones
        raise


def map_unordered(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn(item)`` for each item on the worker processes, results as they finish (items
    should be few and large, e.g. the folders of a tree)."""
    from concurrent.futures import as_completed

    futures = [_executor().submit(fn, item) for item in items]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def copy_files(items: Sequence[tuple[str, str, int]]) -> int:
    """Copy each ``(source, destination, modification time in ns)`` file, keeping that time
    as ``cp -p`` does (a worker's chunk; destination folders exist); the bytes copied."""
    import shutil

    copied = 0
    for src, dest, mtime_ns in items:
        shutil.copyfile(src, dest)
        os.utime(dest, ns=(mtime_ns, mtime_ns))
        copied += os.path.getsize(dest)
    return copied
