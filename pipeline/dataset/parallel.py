"""An order-preserving parallel map with a bounded number of items in flight.

Order keeps the packed blocks identical whatever the worker count; the bound keeps memory flat when
workers outrun the writer (Pool.imap would queue every result). Workers are spawned, not forked: the
parent may hold torch/tokenizers threads (after stage 1 in `gpt2zh run`), and a fork copies their
locks.
"""

import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from gpt2zh.stop_signals import spawned_child_initializer

Item = TypeVar("Item")
Result = TypeVar("Result")
_END = object()


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int,
                initializer: Callable[..., None], initargs: tuple, in_flight_per_worker: int = 2) -> Iterator[Result]:
    if workers <= 1:
        initializer(*initargs, in_worker_process=False)
        yield from map(function, items)
        return
    context = multiprocessing.get_context("spawn")
    # the workers leave a stop signal sent to the whole process group to this process (stop_signals.py)
    start, start_args = spawned_child_initializer(initializer, initargs)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start, initargs=start_args)
    try:
        queue = iter(items)
        first = itertools.islice(queue, workers * in_flight_per_worker)
        pending = deque(pool.submit(function, item) for item in first)
        while pending:
            result = pending.popleft().result()
            following = next(queue, _END)
            if following is not _END:
                pending.append(pool.submit(function, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # joins the workers
        _stop_resource_tracker()


def _stop_resource_tracker() -> None:
    """Spawned workers start multiprocessing's resource-tracker process, which otherwise lives until the
    interpreter exits and then lingers as an orphan after the command is done; stop and reap it now (a
    later pool starts a new one)."""
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)  # private: skipped where a release lacks it
    if stop is not None:
        stop()
