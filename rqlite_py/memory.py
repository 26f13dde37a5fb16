"""Hand the C heap's free memory back to the operating system.

Python's large objects and SQLite's buffers come from glibc's malloc, which
keeps what is freed in the middle of its heaps for reuse. A node's working set
comes and goes in bursts (a 1 MB request is a body, parsed statements, a log
entry, two encoded messages), so its resident size follows its peaks, not
what it holds. A leader serving a 1 GB database was 102-114 MB resident; with
this trimming, 88-96 MB (79 MB trimming every 2 s whatever was free; issue 7,
scripts/bench_cluster.py). glibc's
malloc_trim releases free pages anywhere in the heaps, not only at the top.
Elsewhere (musl, macOS) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 2.0
TRIM_MIN_FREE_BYTES = 8 << 20
"""Below this much free memory in the heaps a trim is not worth its page
faults (the next burst maps the pages again)."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc_heap() -> tuple[Callable[[], int], Callable[[], None]] | None:
    """(free bytes held in malloc's heaps, trim) from glibc >= 2.33, or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    malloc_trim.argtypes = [ctypes.c_size_t]

    def free_bytes() -> int:
        return int(mallinfo2().fordblks)

    def trim() -> None:
        malloc_trim(0)  # ctypes releases the GIL for the call

    return free_bytes, trim


class Trimmer:
    """A thread that trims the heaps every `interval_s` while they hold at
    least `min_free` free bytes."""

    def __init__(
        self,
        free_bytes: Callable[[], int],
        trim: Callable[[], None],
        interval_s: float = TRIM_INTERVAL_S,
        min_free: int = TRIM_MIN_FREE_BYTES,
    ) -> None:
        self._free_bytes = free_bytes
        self._trim = trim
        self._interval_s = interval_s
        self._min_free = min_free
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)
        self.trims = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> bool:
        """Trim now if it is worth it; True if it trimmed."""
        if self._free_bytes() < self._min_free:
            return False
        self._trim()
        self.trims += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()


def start_trimming() -> Trimmer | None:
    heap = glibc_heap()
    if heap is None:
        log.info("no malloc_trim here: free heap memory stays with the process")
        return None
    trimmer = Trimmer(*heap)
    trimmer.start()
    return trimmer
