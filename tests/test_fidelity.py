"Fidelity measures against closed forms and an independent k-NN implementation (scikit-learn)."
import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from dmkd.data import ImageSet, load_dataset
from dmkd.fidelity import fidelity, frechet_distance, kernel_distance, precision_recall, teacher_measures
from dmkd.models import get_model


def test_frechet_matches_gaussian_closed_form():
    "Two diagonal Gaussians: FD = ||mu1 - mu2||^2 + sum (sigma1 - sigma2)^2, estimated from 20k samples."
    rng = np.random.default_rng(1)
    s1, s2, mu = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5]), np.array([1.0, -2.0, 0.0])
    a = rng.normal(size=(20000, 3)) * s1
    b = rng.normal(size=(20000, 3)) * s2 + mu
    want = (mu ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert abs(frechet_distance(a, b) - want) < 0.1 * want


def test_frechet_symmetric_and_translation_invariant():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) * 2 + 1
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a + 7, b + 7) == pytest.approx(frechet_distance(a, b), rel=1e-6)


def test_kid_orders_distances():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 16))
    near, far = rng.normal(size=(400, 16)) + 0.3, rng.normal(size=(400, 16)) + 1.0
    k0, k1, k2 = (kernel_distance(a, x, subsets=5, subset_size=400)[0] for x in (rng.normal(size=(400, 16)), near, far))
    assert abs(k0) < k1 < k2


def test_precision_recall_matches_sklearn_knn():
    "Precision/recall against a direct scikit-learn k-NN computation on random clouds."
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(300, 5)), rng.normal(size=(250, 5)) * 1.3 + 0.4
    k = 3
    def inside(q, ref):
        radii = NearestNeighbors(n_neighbors=k + 1).fit(ref).kneighbors(ref)[0][:, -1]
        d = np.linalg.norm(q[:, None] - ref[None], axis=-1)
        return (d <= radii[None]).any(1).mean()
    got = precision_recall(real, fake, k)
    assert got['precision'] == pytest.approx(inside(fake, real), abs=1e-9)
    assert got['recall'] == pytest.approx(inside(real, fake), abs=1e-9)


def test_teacher_measures_of_a_real_network():
    "A random-weight network on digits: confidence and entropy agree with its softmax outputs computed directly."
    torch.manual_seed(0)
    net = get_model('resnet8', num_classes=10).eval()
    d = load_dataset('digits', 'test').subset(range(64))
    m = teacher_measures(net, d)
    with torch.no_grad(): p = net(d.images).softmax(1)
    assert m['confidence'] == pytest.approx(p.max(1).values.mean().item(), rel=1e-5)
    assert m['entropy'] == pytest.approx(-(p * p.log()).sum(1).mean().item(), rel=1e-4)
    assert m['agreement'] == pytest.approx((p.argmax(1) == d.labels).float().mean().item() * 100, rel=1e-6)
    assert 0 <= m['class_balance'] <= 1


def test_fidelity_shifted_images_are_further():
    "Brightened digits are further from the real test split than the split itself, and less covered by it."
    torch.manual_seed(0)
    net = get_model('resnet8', num_classes=10).eval()
    test = load_dataset('digits', 'test').subset(range(200))
    bright = ImageSet((test.images.int() + 80).clamp(0, 255).to(torch.uint8), test.labels, test.classes)
    same, far = fidelity(test, test, net), fidelity(bright, test, net)
    assert same['fd'] < 1e-3 and far['fd'] > 0.01
    assert same['precision'] == 1.0 and far['precision'] < same['precision']
    assert set(same) >= {'fd', 'kid', 'kid_std', 'precision', 'recall', 'agreement', 'confidence', 'entropy', 'class_balance'}
