"""A real teacher run, killed with SIGKILL in the middle of an epoch, resumes from its last checkpoint and ends
with the same configuration key and the same weights as an uninterrupted run: dmkd's sgd recipe in the default tier,
airbench's (its lookahead EMA and alternating flips in the checkpoint) in the slow tier."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import bin_path
from test_cli import _here

ARGS = ['--dataset', 'digits', '--teacher', 'resnet8', '--teacher-epochs', '4', '--teacher-lr', '0.1', '--device', 'cpu']
#: airbench's recipe at batch 64: 9 steps an epoch (539 images), so its lookahead (every 5 steps) and the flips' alternation cross the kill
AIRBENCH = ['--dataset', 'digits', '--teacher', 'airbench93', '--teacher-epochs', '4', '--teacher-batch-size', '64', '--device', 'cpu']


def run(cache, *extra, args=ARGS, **kw):
    env = dict(os.environ, DMKD_CACHE=str(cache))
    return subprocess.run([bin_path('dmkd_train_teacher'), *args, *extra], env=env, capture_output=True, text=True, timeout=600, **kw)


def only_run_dir(cache: Path) -> Path:
    (d,) = [p for p in (cache / 'teachers').iterdir() if p.is_dir()]
    return d


@pytest.mark.timeout(900)
@pytest.mark.parametrize('args', [pytest.param(ARGS, id='sgd'), pytest.param(AIRBENCH, id='airbench', marks=pytest.mark.slow)])
def test_kill_mid_epoch_then_resume(tmp_path, args):
    ref = run(tmp_path / 'ref', args=args)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_dir = only_run_dir(tmp_path / 'ref')

    cache = tmp_path / 'killed'
    env = dict(os.environ, DMKD_CACHE=str(cache))
    p = subprocess.Popen([bin_path('dmkd_train_teacher'), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0, state = time.time(), None
    while time.time() - t0 < 300 and p.poll() is None:
        st = list(cache.glob('teachers/*/state.pt'))
        if st:
            state = st[0]
            break
        time.sleep(0.05)
    assert state is not None, "the run never wrote a checkpoint"
    time.sleep(0.3)                       # into the next epoch
    p.send_signal(signal.SIGKILL); p.wait()
    run_dir = state.parent
    assert not (run_dir / 'model.safetensors').exists(), "the run finished before it could be killed"
    done = torch.load(state, weights_only=True)['epoch']
    assert 1 <= done < 4

    res = run(cache, args=args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"Resuming {args[3]} from epoch {done} of 4" in res.stdout + res.stderr
    meta = json.loads((run_dir / 'model.json').read_text())
    ref_meta = json.loads((ref_dir / 'model.json').read_text())
    assert run_dir.name == ref_dir.name and meta['key'] == ref_meta['key']
    assert [h['epoch'] for h in meta['history']] == [1, 2, 3, 4]
    assert meta['accuracy'] == ref_meta['accuracy']
    a, b = load_file(run_dir / 'model.safetensors'), load_file(ref_dir / 'model.safetensors')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (run_dir / 'state.pt').exists()

    again = run(cache, args=args)         # a third request loads from the cache without training
    assert again.returncode == 0 and 'epoch ' not in again.stdout and meta['key'] in again.stdout


def test_cli_errors(tmp_path, monkeypatch, capsys):
    "The first mistake from a shell (the installed script, its exit status); the others through its entry point in-process."
    bad = subprocess.run([bin_path('dmkd_train_teacher'), '--teacher', 'resnet99', '--cache', str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "argument --teacher: invalid choice: 'resnet99'" in bad.stderr and 'vgg11' in bad.stderr
    assert 'Traceback' not in bad.stderr and bad.returncode == 2      # a bad knob: one line, argparse's exit status
    here = lambda *args: _here(['dmkd_train_teacher', *args], tmp_path, monkeypatch, capsys)
    miss = here('--dataset', 'cifar10', '--root', str(tmp_path), '--cache', str(tmp_path))
    assert miss.returncode != 0 and f"was not found in {tmp_path / 'cifar10'}" in miss.stderr and 'download=True' in miss.stderr
    helptext = here('--help').stdout
    for opt in ('--dataset', '--teacher', '--teacher-epochs', '--keep-epochs', '--root', '--cache', '--device'): assert opt in helptext
    near = here('--epochs', '3', '--cache', str(tmp_path))
    assert near.returncode == 2 and '--epochs' in near.stderr    # the teacher's epochs are --teacher-epochs, as in dmkd_run
