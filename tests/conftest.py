import os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault('MPLBACKEND', 'Agg')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    "A private cache root for one test (also seen by subprocesses through $DMKD_CACHE)."
    d = tmp_path / 'cache'
    monkeypatch.setenv('DMKD_CACHE', str(d))
    return d


def shared_cifar10() -> Path | None:
    "The CIFAR-10 ImageFolder copy beside the checkout (or at $DMKD_CIFAR10_FOLDER), if present."
    p = Path(os.environ.get('DMKD_CIFAR10_FOLDER', ROOT.parent / 'shared' / 'data' / 'cifar10'))
    return p if (p / 'train').is_dir() and (p / 'test').is_dir() else None


def bin_path(name: str) -> str:
    "A console script of this environment."
    return str(Path(sys.executable).parent / name)
