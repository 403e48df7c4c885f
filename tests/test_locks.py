"""`dmkd.core.LeaseLock` between processes that share a folder: a living holder keeps it however long it holds it; killed
with SIGKILL while holding it, the next process takes it over (the lock file of a dead pid on this host), and the cache's
`build_lock` and the sweeps' per-run claim use it. Other-host owners (the heartbeat's age) are tested in nbs/00_core.ipynb."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from dmkd.core import LeaseLock, LockTimeout

#: Beats every 0.5 s, stale after 5 s: ten beats of margin, so a loaded machine that delays a beat does not look dead.
BEAT, STALE = 0.5, 5.0
HOLD = ("import sys, time; from dmkd.core import LeaseLock\n"
        f"lock = LeaseLock(sys.argv[1], beat={BEAT}, stale_after={STALE}).acquire(); print('held', flush=True); time.sleep(600)")


def _holder(path: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'held'
    return p


def test_a_killed_holder_is_taken_over_a_living_one_never(tmp_path):
    lock = tmp_path / 'shared' / 'entry.lock'
    p = _holder(lock)
    try:
        owner = json.loads(lock.read_text())
        assert owner['pid'] == p.pid
        t0 = time.time()
        with pytest.raises(LockTimeout, match=f'held by pid {p.pid}'):       # alive and beating: past its stale time, not taken
            LeaseLock(lock, timeout=STALE + 2, beat=BEAT, stale_after=STALE).acquire()
        assert time.time() - t0 >= STALE + 2 and json.loads(lock.read_text())['token'] == owner['token']
        os.kill(p.pid, signal.SIGKILL); p.wait()                              # killed while holding it
        t0 = time.time()
        with LeaseLock(lock, timeout=STALE * 4, beat=BEAT, stale_after=STALE) as mine:
            assert time.time() - t0 < STALE                                   # at once (not after stale_after): its pid is gone
            assert json.loads(lock.read_text())['pid'] == os.getpid() and mine.token != owner['token']
        assert not lock.exists() and not list(lock.parent.glob('*.stale-*'))
    finally:
        if p.poll() is None: p.kill()


def test_build_lock_and_sweep_claims_use_it(tmp_path):
    "A cache entry's build lock left by a killed builder does not block the next build; a run claimed by a living driver is busy."
    from dmkd.core import build_lock
    from dmkd.sweeps import execute_run
    p = _holder(tmp_path / 'entry.lock')
    os.kill(p.pid, signal.SIGKILL); p.wait()
    t0 = time.time()
    with build_lock(tmp_path / 'entry'): assert json.loads((tmp_path / 'entry.lock').read_text())['pid'] == os.getpid()
    assert time.time() - t0 < 60.0                                           # far below its stale time (120 s)
    run = dict(run='r', job='j', folder=str(tmp_path / 'run'), notebook='none.ipynb', parameters={})
    q = _holder(tmp_path / 'run' / '.claim.lock')
    try:
        got = execute_run(run, log=lambda s: None)
        assert got['status'] == 'busy', got
    finally:
        q.kill(); q.wait()
