"""CIFAR-10 from the shared ImageFolder copy: decode, cache, and a teacher that learns through the same code.
Skipped cleanly when the copy is absent. Slow tier (`pytest -m slow tests`): it decodes all 60,000 images and trains on
6,000 of them; the ImageFolder code itself is tested on small trees in `nbs/01_data.ipynb`."""
import time

import pytest
import torch

from conftest import shared_cifar10
from dmkd.data import load_dataset
from dmkd.train import TrainConfig, evaluate, fit_classifier

FOLDER = shared_cifar10()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(FOLDER is None, reason='no CIFAR-10 ImageFolder copy at ../shared/data/cifar10')]


@pytest.mark.timeout(900)
def test_cifar10_imagefolder_teacher(cache):
    t0 = time.time(); train = load_dataset('imagefolder', 'train', root=FOLDER, progress=False); first = time.time() - t0
    test = load_dataset('imagefolder', 'test', root=FOLDER, progress=False)
    assert (len(train), len(test)) == (50_000, 10_000) and train.shape == (3, 32, 32)
    assert train.classes[:3] == ['airplane', 'automobile', 'bird'] and train.class_counts() == [5000] * 10
    assert abs(train.mean[0] - 0.491) < 0.01                       # CIFAR-10's known channel means
    t0 = time.time(); again = load_dataset('imagefolder', 'train', root=FOLDER, progress=False); second = time.time() - t0
    assert torch.equal(again.images, train.images) and second < first / 3, (first, second)

    g = torch.Generator().manual_seed(0)
    sub = train.subset(torch.randperm(len(train), generator=g)[:6000])
    model, out = fit_classifier(TrainConfig(dataset='imagefolder', arch='resnet8', epochs=2, lr=0.1), sub, None, 'cpu', progress=False)
    acc = evaluate(model, test.subset(torch.arange(0, 10_000, 5)))['acc']
    assert acc > 25, acc                                           # chance is 10%
