"""Independent draws of a modeled experiment on several processes."""
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], tasks: Sequence[T], workers: int) -> Iterator[R]:
    """``map(fn, tasks)`` in order, on ``workers`` processes (1: in this one).

    ``fn`` must be a module-level function (it is pickled); chunks are sized
    so each worker gets about eight of them.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        yield from map(fn, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
