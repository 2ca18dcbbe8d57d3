"""The worker pool with real worker processes (spawned, or forked from a fork server): no file can stall it,
and a stop is honoured at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from chromatica_watch.ingest.pool import Failed, Indexed, IngestPool, StartMethod, Task
from tests.conftest import photo, solid, write_rgb
from tests.pool_work import misbehaving_chunk


def _tasks(root: Path, names: list[str]) -> list[Task]:
    for i, name in enumerate(names):
        write_rgb(root / name, solid((40 * i % 256, 90, 200), (16, 16)) if i % 2 else photo("coffee"))
    return [Task(str(root), name.encode()) for name in names]


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_hung_file_and_a_crashing_decoder_fail_alone_and_the_rest_is_indexed(
        tmp_path: Path, start_method: StartMethod) -> None:
    names = ["a.png", "b-hang.png", "c.png", "d-crash.png", "e.png", "f.png"]
    tasks = _tasks(tmp_path, names)
    with IngestPool(2, 64, 10_000_000, file_timeout=1.0, work=misbehaving_chunk, start_method=start_method) as pool:
        results = list(pool.run(tasks, chunk_size=2))
        # The pool is whole again afterwards: replaced workers take new work.
        again = pool.process(_tasks(tmp_path / "again", ["g.png", "h.png", "i.png"]))
    assert [r.task.path.decode() for r in results] == names  # task order kept
    by_name = {r.task.path.decode(): r for r in results}
    hung, crashed = by_name["b-hang.png"], by_name["d-crash.png"]
    assert isinstance(hung, Failed) and "took longer than 1 s" in hung.reason, hung
    assert hung.size == (tmp_path / "b-hang.png").stat().st_size
    assert isinstance(crashed, Failed) and "crashed" in crashed.reason and "signal 11" in crashed.reason, crashed
    assert all(isinstance(by_name[n], Indexed) for n in ("a.png", "c.png", "e.png", "f.png"))
    assert [type(r) for r in again] == [Indexed] * 3


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_should_stop_returns_while_a_worker_hangs_and_close_kills_it(tmp_path: Path, start_method: StartMethod) -> None:
    tasks = _tasks(tmp_path, ["x-hang.png", "y-hang.png", "z.png"])
    stop = threading.Event()
    pool = IngestPool(2, 64, 10_000_000, file_timeout=3600.0, work=misbehaving_chunk, start_method=start_method)
    pool.start()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    started = time.monotonic()
    results = list(pool.run(tasks, chunk_size=1, should_stop=stop.is_set))
    returned = time.monotonic() - started
    pool.close(cancel=True)
    closed = time.monotonic() - started
    timer.join()
    assert all(not isinstance(r, Indexed) or r.task.path == b"z.png" for r in results)
    assert returned < 10, f"run() took {returned:.1f} s to honour should_stop"
    assert closed < 20, f"close(cancel=True) took {closed - returned:.1f} s with hung workers"


def test_the_pool_manager_starts_on_demand_stops_when_idle_and_keeps_its_settings() -> None:
    import multiprocessing

    from chromatica_watch.ingest.pool import PoolManager, PoolSettings

    now = [0.0]
    manager = PoolManager(PoolSettings(1, 64, 1_000_000, 5.0), clock=lambda: now[0], idle_after=30.0)
    try:
        assert manager.current is None and not manager.stop_if_idle(has_work=False)
        pool = manager.get(warm=True)
        assert [p.name for p in multiprocessing.active_children()] == ["pebble_pool_worker"]
        assert (pool.workers, pool.max_dimension, pool.max_pixels, pool.file_timeout) == (1, 64, 1_000_000, 5.0)
        assert manager.get() is pool  # one pool while it runs
        now[0] += 29
        assert not manager.stop_if_idle(has_work=False)  # recently used
        now[0] += 2
        assert not manager.stop_if_idle(has_work=True)  # files queued: keep the workers
        assert manager.stop_if_idle(has_work=False) and manager.current is None
        assert not [p for p in multiprocessing.active_children() if p.name == "pebble_pool_worker"]
        assert manager.get() is not pool  # started again, with the same settings
        assert manager.get().max_dimension == 64
    finally:
        manager.close()
    assert manager.current is None
