"""Shared set-up of the test suite (`pytest -n 2 tests`, the README's test command).

- **One fresh cache per run.** Every test, notebook and subprocess of one run shares one content-keyed cache
  (`$DMKD_CACHE` points at a temporary folder made when the run starts and removed when it ends), so the tiny teacher,
  the tiny DDPM and the stores that several notebooks and tests need are made once. Set `DMKD_TEST_ROOT=<folder>` to
  keep that folder between runs on purpose (a warm cache); the user's own `data/cache` is never read or written.
- **Two tiers.** The default tier checks plumbing and maths on tiny configurations; tests marked `slow` (full-size
  runs: the main job's accuracy, the library notebooks' `#| slow` cells, the CIFAR-10 teacher) run only when asked:
  `pytest -m slow tests`.
- **Threads.** Under pytest-xdist each worker gets its share of the cores (`OMP_NUM_THREADS`), so two workers on two
  cores do not oversubscribe them (a training step was measured 12x slower that way).
"""
import os, shutil, sys, tempfile
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
_workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _workers > 1 and 'OMP_NUM_THREADS' not in os.environ:   # before torch is imported by any test module
    os.environ['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // _workers))


def pytest_configure(config):
    config.addinivalue_line('markers', "slow: a full-size check, run only by `pytest -m slow tests`")
    if hasattr(config, 'workerinput'): return            # an xdist worker: the controller has set the environment
    if os.environ.get('DMKD_TEST_ROOT'):
        root = Path(os.environ['DMKD_TEST_ROOT']); root.mkdir(parents=True, exist_ok=True); config._dmkd_tmp = None
    else:
        root = Path(tempfile.mkdtemp(prefix='dmkd-tests-')); config._dmkd_tmp = root
        os.environ['DMKD_TEST_ROOT'] = str(root)       # inherited by the xdist workers and every subprocess
    os.environ['DMKD_CACHE'] = str(root / 'cache')


def pytest_unconfigure(config):
    tmp = getattr(config, '_dmkd_tmp', None)
    if tmp is not None: shutil.rmtree(tmp, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` run only when the mark expression asks for them (`-m slow`). The docs site test (its build reads
    every notebook the run executes, then the crawl) goes right after the notebook tests, which by then have executed
    them side by side, and the tests that read no notebook fill the other worker while it builds and crawls; the other
    docs tests, which read the built site, go last (run last, the site test left one worker alone for 30 s)."""
    items.sort(key=lambda it: it.path.name == 'test_docs.py')
    site = [it for it in items if it.path.name == 'test_docs.py' and it.originalname == 'test_site']
    notebooks = [i for i, it in enumerate(items) if it.path.name == 'test_notebooks.py']
    if site and notebooks:
        items.remove(site[0]); items.insert(notebooks[-1] + 1, site[0])
    if 'slow' in (config.getoption('markexpr') or ''): return
    skip = pytest.mark.skip(reason='slow tier: run it with `pytest -m slow tests`')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)


_SPANS: dict = {}   # worker -> [(start, stop)] of every test phase it ran (the controller's view, from the reports)


def pytest_runtest_logreport(report):
    worker = getattr(getattr(getattr(report, 'node', None), 'gateway', None), 'id', None)
    if worker and getattr(report, 'start', None): _SPANS.setdefault(worker, []).append((report.start, report.stop))


def pytest_terminal_summary(terminalreporter):
    """Under pytest-xdist, how the workers' time was spent: each worker's busy seconds and when it ran its last test,
    so a run's wall time can be read as work plus the tail where one worker waited for the other."""
    if len(_SPANS) < 2: return
    t0 = min(a for s in _SPANS.values() for a, _ in s)
    ends = {w: max(b for _, b in s) - t0 for w, s in _SPANS.items()}
    busy = {w: sum(b - a for a, b in s) for w, s in _SPANS.items()}
    words = ', '.join(f'{w} {busy[w]:.0f} s busy, last test ended at {ends[w]:.0f} s' for w in sorted(_SPANS))
    terminalreporter.write_line(f'workers: {words}; the last worker ran alone for {max(ends.values()) - min(ends.values()):.0f} s')


def once_per_run(name: str, make) -> Path:
    """`<run>/<name>`, made by `make(folder)` by whichever worker asks first (the others wait for it, then read it): an
    artefact several tests need, made once per run however the tests are spread over the workers."""
    out = run_root() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + '.lock'):
        if not out.exists():
            tmp = out.with_name(f'.making-{out.name}')       # same suffix: a tool that checks it (papermill: .ipynb) is content
            if tmp.exists(): shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            make(tmp)
            tmp.replace(out)
    return out


def run_root() -> Path:
    "The folder this run shares between its workers: `cache/` (the `$DMKD_CACHE` of the run), executed notebooks, …"
    return Path(os.environ['DMKD_TEST_ROOT'])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    "A private cache root for one test (also seen by subprocesses through $DMKD_CACHE): for tests of the cache itself."
    d = tmp_path / 'cache'
    monkeypatch.setenv('DMKD_CACHE', str(d))
    return d


def shared_cache() -> Path:
    "The cache this run shares (its teachers, generators and stores are made once per run)."
    return Path(os.environ['DMKD_CACHE'])


TINY_TEACHER = dict(dataset='digits', arch='resnet8', epochs=3)   # the run's one teacher: tests and experiment notebooks
TINY_DDPM_ARGS = ['--ddpm-steps', '20']                             # the run's one in-project DDPM (20 optimiser steps)


def tiny_teacher(into: Path | None = None):
    """The run's tiny digits teacher (resnet8, 3 epochs) from the shared cache, trained there by whoever asks first; with
    `into`, its cache folder is also copied into the cache root `into` (a test's private cache starts with it, untrained again)."""
    from dmkd.train import TrainConfig, get_teacher, teacher_dir
    net, meta = get_teacher(cache=shared_cache(), device='cpu', progress=False, **TINY_TEACHER)
    if into is not None:
        src = teacher_dir(TrainConfig(**TINY_TEACHER), meta['data_digest'], shared_cache())
        shutil.copytree(src, Path(into) / 'teachers' / src.name, dirs_exist_ok=True)
    return net, meta


def shared_cifar10() -> Path | None:
    "The CIFAR-10 ImageFolder copy beside the checkout (or at $DMKD_CIFAR10_FOLDER), if present."
    p = Path(os.environ.get('DMKD_CIFAR10_FOLDER', ROOT.parent / 'shared' / 'data' / 'cifar10'))
    return p if (p / 'train').is_dir() and (p / 'test').is_dir() else None


def bin_path(name: str) -> str:
    "A console script of this environment."
    return str(Path(sys.executable).parent / name)
