"""Independent draws of a modeled experiment on several processes."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R], tasks: Sequence[T], workers: int, start_method: Optional[str] = None
) -> Iterator[R]:
    """``map(fn, tasks)`` in order, on ``workers`` processes (1, or a single task: in this one).

    ``fn`` must be a module-level function (it is pickled); chunks are sized
    so each worker gets about eight of them. ``start_method`` picks how the
    workers start (multiprocessing's default when None); ``"spawn"`` where the
    parent has already run torch, whose thread pools do not survive a fork.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        yield from pool.map(fn, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
