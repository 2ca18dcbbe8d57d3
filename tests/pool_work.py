"""Work functions for the ingest pool tests: imported by real spawned worker processes.

They wrap the real `process_chunk`, except for files named to misbehave: `*hang*` blocks forever
(like a read on a hung network mount), `*crash*` kills its worker with SIGSEGV (like a decoder bug).
"""

from __future__ import annotations

import os
import signal
import time

from chromatica_watch.ingest.pool import Result, Task, process_chunk


def misbehaving_chunk(tasks: list[Task], max_dimension: int, max_pixels: int) -> list[Result]:
    for task in tasks:
        if b"hang" in task.path:
            time.sleep(3600)
        if b"crash" in task.path:
            os.kill(os.getpid(), signal.SIGSEGV)
    return process_chunk(tasks, max_dimension, max_pixels)
