"""Baselines through the real KD loop and from a shell: the adversarial generator term of ZSKT/DFAD really compares
the teacher with the student being trained (and is non-zero), `dmkd_baseline` writes a complete record with
synthesis and KD time apart, and bad input (unknown method, an option the method does not take, a missing One-Image
file) fails with a clear message before any work is done.

The run's one tiny teacher (resnet8, 3 epochs, `conftest.tiny_teacher`) keeps this fast; `nbs/baselines.ipynb` runs the
real settings."""
import json, subprocess, sys

import pytest
import torch

from conftest import bin_path, shared_cache, tiny_teacher
from dmkd.datafree import GeneratorHook, GeneratorRecipe
from dmkd.inversion import disagreement
from dmkd.data import ImageSet, load_dataset
from dmkd.distill import KDConfig, distill_student
from dmkd.runs import baseline_main

TINY = ['--dataset', 'digits', '--teacher', 'resnet8', '--teacher-epochs', '3', '--student', 'resnet8', '--epochs', '1',
        '--device', 'cpu', '--quiet']


@pytest.fixture(scope='module')
def teacher():
    net, _ = tiny_teacher()
    return net.eval(), load_dataset('digits', 'test')


@pytest.mark.parametrize('divergence', ['l1', 'kl'])
def test_adversarial_term_compares_teacher_with_student(teacher, divergence):
    net, test = teacher
    seen = []

    class Watch(GeneratorHook):
        def __call__(self, x, step, student, teacher):
            out = super().__call__(x, step, student, teacher)
            if step % self.student_steps == 0:
                with torch.no_grad():
                    t, s = teacher(out), student(out)
                seen.append((student is not teacher, self.last['adv'], disagreement(t, s, divergence).item(),
                             disagreement(t, teacher(out), divergence).item()))
            return out

    hook = Watch(net, GeneratorRecipe(dict(adv=1.0), divergence, student_steps=2, ngf=16), device='cpu')
    blank = ImageSet(torch.zeros(256, 3, 32, 32, dtype=torch.uint8), torch.arange(256) % 10, test.classes)
    _, res = distill_student(KDConfig(student='resnet8', epochs=1, batch_size=32), net, blank, test, 'cpu', progress=False, on_batch=hook)
    assert len(seen) == 4 and hook.updates == 4 and res['complete']
    for is_student, adv, d_student, d_self in seen:
        assert is_student                       # the hook got the student the loop trains, not the teacher
        assert adv < 0 and d_student > 0         # the generator's term is the (negated) teacher-student disagreement, non-zero
        assert d_self == pytest.approx(0, abs=1e-6)   # what the term would be if the teacher were passed as the student
    # against the fresh student the disagreement is large; later the student catches up with the teacher on the images the
    # generator collapses to (KL fell from 2.4 to 4e-5 in four updates with an 8-epoch digits teacher), so only its sign is fixed
    assert seen[0][2] > 1e-2


def run(*args, tmp, cache=None):
    "`dmkd_baseline` from a shell."
    return subprocess.run([bin_path('dmkd_baseline'), *args, '--cache', str(cache or tmp / 'cache'), '--reports', str(tmp / 'reports')],
                          capture_output=True, text=True, timeout=900)


def run_here(*args, tmp, monkeypatch, capsys, cache=None) -> tuple[int, str, str]:
    """`dmkd_baseline` through the same entry point in this process (no second import of torch and dmkd): its exit status
    (a mistake: the `SystemExit` argparse and the knob checks raise, or the error's message), stdout and stderr."""
    monkeypatch.setattr(sys, 'argv', ['dmkd_baseline', *args, '--cache', str(cache or tmp / 'cache'), '--reports', str(tmp / 'reports')])
    try: baseline_main(); code, msg = 0, ''
    except SystemExit as e: code, msg = (e.code or 0), ''
    except Exception as e: code, msg = 1, str(e)
    out = capsys.readouterr()
    return code, out.out, out.err + msg


@pytest.mark.timeout(900)
def test_cli_writes_a_baseline_record(tmp_path):
    tiny_teacher()
    p = run(*TINY, '--method', 'dfad', '--epoch-per-class', '10', '--ngf', '16', tmp=tmp_path, cache=shared_cache())   # the run's teacher
    assert p.returncode == 0, p.stderr[-3000:]
    (f,) = (tmp_path / 'reports' / 'results').glob('*.json')
    rec = json.loads(f.read_text())
    assert rec['schema'] == 2 and rec['method'] == 'dfad' and rec['complete'] and not rec['uses_real_images']
    assert rec['n_images'] == 100 and rec['generator_updates'] == 1 and rec['synthesis_seconds'] > 0 and rec['kd_seconds'] > 0
    assert rec['student_acc'] is not None and rec['teacher_acc'] > 30 and rec['params']['ngf'] == 16
    assert 'dfad:' in p.stdout and str(f) in p.stdout


def test_cli_bad_input(tmp_path, monkeypatch, capsys):
    "Each mistake stops before any work with a message that says what to do: the first from a shell, the rest in-process."
    p = run(*TINY, '--method', 'magic', tmp=tmp_path)
    assert p.returncode != 0 and 'Valid methods' in p.stderr and 'deepinversion' in p.stderr
    err = lambda *extra: run_here(*TINY, *extra, tmp=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    code, _, msg = err('--method', 'dafl', '--strength', '0.5')
    assert code != 0 and 'dafl does not take strength; it takes: epoch_per_class' in msg, msg
    code, _, msg = err('--method', 'dafl', '--n-aug', '4')
    assert code != 0 and 'dafl does not take --n-aug' in msg, msg
    code, _, msg = err('--method', 'one_image', '--image', str(tmp_path / 'missing.jpg'))
    assert code != 0 and 'One-Image source image not found' in msg, msg
    assert not (tmp_path / 'cache').exists()    # nothing was trained before the error


@pytest.mark.timeout(900)
def test_cli_budget_is_stated_and_collapse_flagged(tmp_path, monkeypatch, capsys):
    """`--budget` sets a joint-training method's length from its reference's generator updates (ZSKT: 80,000), and the
    record states what the images cost in teacher passes and whether the run collapsed. In-process (the shell's own
    run is `test_cli_writes_a_baseline_record`'s)."""
    tiny_teacher()
    here = lambda *extra: run_here(*TINY, '--method', 'zskt', *extra, tmp=tmp_path, cache=shared_cache(),
                                   monkeypatch=monkeypatch, capsys=capsys)
    code, _, err = here('--budget', '5e-05', '--ngf', '16')
    assert code == 0, err[-3000:]
    (f,) = (tmp_path / 'reports' / 'results').glob('*.json')
    rec = json.loads(f.read_text())
    b = rec['synthesis_budget']
    # 80,000 x 5e-5 = 4 generator updates, each followed by ZSKT's 10 student steps: 40 KD steps of 64 images in one epoch
    assert rec['params']['budget'] == 5e-05 and rec['params']['student_steps'] == 10 and rec['n_images'] == 2560
    assert b['generator_updates'] == 4 == rec['generator_updates'] and b['budget'] == 5e-05 and b['device'] == 'cpu'
    assert b['teacher_backward'] == b['teacher_forward'] == 4 * 64     # one generator step of 64 images per update
    assert rec['collapsed'] == (rec['collapse'] is not None) and 0 < rec['image_top_class_share'] <= 1
    code, _, err = here('--budget', '0.1', '--epoch-per-class', '10')
    assert code != 0 and 'not both' in err, err[-2000:]


def test_kd_steps_give_every_row_the_same_student_training(tmp_path, monkeypatch, capsys):
    """`--kd-steps` fixes the student's training for every row: DM-KD's 50-image store, KD on the real train split and a
    joint generator method (ZSKT; Fast, its adversarial term on) all take 12 KD steps of 64 images; ZSKT's budget sets its generator updates (80,000 × 5e-5
    = 4), spread over those 12 steps, not the student's training. Without it, ZSKT's budget set the KD length (40 steps)."""
    tiny_teacher()
    runs = dict(diffusion=['--n-per-class', '5', '--num-steps', '2', '--ddpm-steps', '20'], kd_real=[],
                zskt=['--budget', '5e-05', '--ngf', '16'], fast=['--ngf', '16', '--student-steps', '1'])
    recs = {}
    for method, extra in runs.items():
        out = tmp_path / method
        code, _, err = run_here(*TINY, '--method', method, '--kd-steps', '12', *extra, tmp=out, cache=shared_cache(),
                                monkeypatch=monkeypatch, capsys=capsys)       # in-process: the CLI's own tests run it from a shell
        assert code == 0, err[-3000:]
        (f,) = (out / 'reports' / 'results').glob('*.json')
        recs[method] = json.loads(f.read_text())
    assert {m: r['kd_steps'] for m, r in recs.items()} == dict(diffusion=12, kd_real=12, zskt=12, fast=12)
    assert {m: r['spec']['kd']['kd_steps'] for m, r in recs.items()} == dict(diffusion=12, kd_real=12, zskt=12, fast=12)
    assert all(sum(h['images'] for h in r['history']) == 12 * 64 for r in recs.values())
    assert recs['zskt']['generator_updates'] == 4
    # Fast-DFKD: a round every KD step (12), the adversarial term on after its warm-up share (20/220 of the rounds),
    # counted in the record
    b = recs['fast']['synthesis_budget']
    assert b['generator_updates'] == 12 and b['adversarial_updates'] >= 0.9 * 12, b
