"""CIFAR-10 from the shared ImageFolder copy: decode, cache, and a teacher that learns through the same code.
Skipped cleanly when the copy is absent. Slow tier (`pytest -m slow tests`): it decodes all 60,000 images (the teacher's
22,500 and its 2,500 of validation, the generator's carved-off 25,000, the 10,000 of the test split), checks the three
train parts share no image, and
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
    val = load_dataset('imagefolder', 'val', root=FOLDER, progress=False)         # a tenth of the teacher's half: every choice is made on it
    assert (len(train), len(val), len(corpus), len(test)) == (22_500, 2_500, 25_000, 10_000) and train.shape == (3, 32, 32)
    assert train.classes[:3] == ['airplane', 'automobile', 'bird'] and corpus.class_counts() == [2500] * 10
    assert train.class_counts() == [2250] * 10 and val.class_counts() == [250] * 10
    digest = lambda s: {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in s.images}
    a, b, v = digest(train), digest(corpus), digest(val)
    assert (len(a), len(b), len(v)) == (22_500, 25_000, 2_500) and not a & b and not a & v and not b & v   # no image in two parts (measured: 0)
    assert abs(train.mean[0] - 0.491) < 0.01                       # CIFAR-10's known channel means
    t0 = time.time(); again = load_dataset('imagefolder', 'train', root=FOLDER, progress=False); second = time.time() - t0
    assert torch.equal(again.images, train.images) and second < first / 3, (first, second)

    g = torch.Generator().manual_seed(0)
    sub = train.subset(torch.randperm(len(train), generator=g)[:6000])
    model, out = fit_classifier(TrainConfig(dataset='imagefolder', arch='resnet8', epochs=2, lr=0.1), sub, None, 'cpu', progress=False)
    acc = evaluate(model, test.subset(torch.arange(0, 10_000, 5)))['acc']
    assert acc > 25, acc                                           # chance is 10%


@pytest.mark.timeout(3600)
def test_airbench_teacher_reaches_85_on_the_full_test_split(cache):
    """The CPU regime's strong teacher (`teacher_preset('cifar10_cpu')`): `airbench93` with its own recipe (`dmkd.train.RECIPES['airbench']`, batch 1024)
    for 20 epochs on the teacher's 22,500 images (440 steps; airbench93's 11 epochs of 50,000 are 528), scored once on
    all 10,000 test images. Measured on 2 cores (AMD EPYC, 2 threads, the machine otherwise quiet): 85.74 % (validation
    86.00 %, still rising: 83.08 % at epoch 15) in 1,637 s of training, 67-103 s per epoch. At the recipe's 11 epochs it
    reached 84.33 %. Its time is printed, not asserted (it depends on the machine); the accuracy's margin is 0.74 points,
    so another CPU's float order could land it below 85."""
    from dmkd.train import get_teacher, teacher_preset
    splits = tuple(load_dataset('imagefolder', s, root=FOLDER, progress=False) for s in ('train', 'val', 'test'))
    t0 = time.time()
    net, meta = get_teacher(teacher_preset('cifar10_cpu'), data=splits, progress=False)
    print(f"airbench93: {meta['accuracy']:.2f}% on the 10,000 test images (val {meta['val_acc']:.2f}%), "
          f"{time.time() - t0:.0f}s, {torch.get_num_threads()} threads")
    assert len(splits[2]) == 10_000 and meta['accuracy'] >= 85, meta['accuracy']
    again, meta2 = get_teacher(TrainConfig(dataset='imagefolder', arch='airbench93', epochs=20), data=splits)   # the same fields: cached
    assert meta2['key'] == meta['key'] and meta2['accuracy'] == meta['accuracy']
