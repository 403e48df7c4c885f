"""CIFAR-10 from the shared ImageFolder copy: decode, cache, and a teacher that learns through the same code.
Skipped cleanly when the copy is absent. Slow tier (`pytest -m slow tests`): it decodes all 60,000 images (the teacher's
25,000, the generator's carved-off 25,000, the 10,000 of the test split), checks the two train parts share no image, and
trains on 6,000 of the teacher's; the ImageFolder code itself is tested on small trees in `nbs/01_data.ipynb`."""
import hashlib, time

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
    corpus = load_dataset('imagefolder', 'corpus', root=FOLDER, progress=False)   # the generator's half, carved off before the teacher sees it
    assert (len(train), len(corpus), len(test)) == (25_000, 25_000, 10_000) and train.shape == (3, 32, 32)
    assert train.classes[:3] == ['airplane', 'automobile', 'bird'] and train.class_counts() == corpus.class_counts() == [2500] * 10
    digest = lambda s: {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in s.images}
    a, b = digest(train), digest(corpus)
    assert len(a) == len(b) == 25_000 and not a & b                  # no image is both the teacher's and the generator's (measured: 0)
    assert abs(train.mean[0] - 0.491) < 0.01                       # CIFAR-10's known channel means
    t0 = time.time(); again = load_dataset('imagefolder', 'train', root=FOLDER, progress=False); second = time.time() - t0
    assert torch.equal(again.images, train.images) and second < first / 3, (first, second)

    g = torch.Generator().manual_seed(0)
    sub = train.subset(torch.randperm(len(train), generator=g)[:6000])
    model, out = fit_classifier(TrainConfig(dataset='imagefolder', arch='resnet8', epochs=2, lr=0.1), sub, None, 'cpu', progress=False)
    acc = evaluate(model, test.subset(torch.arange(0, 10_000, 5)))['acc']
    assert acc > 25, acc                                           # chance is 10%
