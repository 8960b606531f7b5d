"""Process-wide settings some calls need for a moment, changed so that threads do not collide.

Three libraries keep state for the whole process that saving a model needs changed briefly:
a logger's output, cloudpickle's list of modules pickled by value, and the warnings filters.
Setting and restoring them naively breaks with threads: two calls restore out of order and
leave the process changed for good. Each helper here is safe from many threads at once and
leaves the state exactly as it found it once every call is done.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["no_warnings", "pickled_by_value", "quiet_logger"]

_lock = threading.Lock()
#: How many calls under way need each module pickled by value (modules we registered only).
_by_value: Counter[str] = Counter()
#: catch_warnings swaps the process's filter list: one at a time, so restores keep their order.
_warnings_lock = threading.RLock()


class _ThisThreadBelow(logging.Filter):
    """Drops the records one thread logs below ``level``; every other thread's pass."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or record.levelno >= self.level


@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Drop what the calling thread logs to ``name`` (or a logger below it) under ``level``.

    The logger's level is left alone: other threads' records, and the caller's own at
    ``level`` and above, still pass.
    """
    dropped = _ThisThreadBelow(level)
    loggers = [logging.getLogger(name)]
    manager = logging.Logger.manager
    prefix = f"{name}."
    with _lock:  # the children that exist now; records of later ones reach no handler of ours
        loggers += [
            logger
            for key, logger in list(manager.loggerDict.items())
            if key.startswith(prefix) and isinstance(logger, logging.Logger)
        ]
    for logger in loggers:
        logger.addFilter(dropped)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(dropped)


@contextmanager
def pickled_by_value(modules: Iterable[Any]) -> Iterator[None]:
    """Cloudpickle pickles ``modules`` by value while any call under this is running.

    A module registered by someone else (the user) stays registered; one registered here is
    unregistered when the last call that needs it is done.
    """
    import cloudpickle

    ours: list[Any] = []
    with _lock:
        for module in modules:
            name = module.__name__
            if _by_value[name] == 0:
                if name in cloudpickle.list_registry_pickle_by_value():
                    continue  # someone else's registration: not ours to count or undo
                cloudpickle.register_pickle_by_value(module)
            _by_value[name] += 1
            ours.append(module)
    try:
        yield
    finally:
        with _lock:
            for module in ours:
                name = module.__name__
                _by_value[name] -= 1
                if _by_value[name] == 0:
                    del _by_value[name]
                    cloudpickle.unregister_pickle_by_value(module)


@contextmanager
def no_warnings() -> Iterator[None]:
    """Ignore warnings for the block (``warnings.catch_warnings`` is process-wide before 3.14).

    Calls take turns, so that each restores the filters it found; warnings other threads
    raise meanwhile are ignored too.
    """
    with _warnings_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
