"""The six command lines as a user meets them: a mistake (a misspelt or near-miss flag, an unknown method, a missing file,
a bad value, a sweep file with mistakes) ends with `prog: error: …` and exit status 2, no traceback (`DMKD_DEBUG=1`
shows it); `--version` works on each. Each script's first mistake runs from a shell, the others (and `--version`, `--help`)
through the same entry point in-process (a start-up of torch and dmkd each saved)."""
import os, subprocess, sys
from importlib.metadata import entry_points

import pytest

from conftest import bin_path

SCRIPTS = ('dmkd_run', 'dmkd_distill', 'dmkd_baseline', 'dmkd_train_teacher', 'dmkd_synthesize', 'dmkd_sweep')

MISTAKES = [   # (command, what the one line says)
    (['dmkd_run', '--guidance-scal', '2'], 'Unrecognised arguments for diffusion: --guidance-scal 2'),   # no prefix matching
    (['dmkd_run', '--method', 'magic'], "Unknown method 'magic'. Valid methods: deepinversion"),
    # a near-miss of --teacher-epochs is no other knob: the checkpoint knob is --teacher-checkpoint
    (['dmkd_run', '--teacher-epoch', '3'], 'Unrecognised arguments for diffusion: --teacher-epoch 3'),
    (['dmkd_run', '--dataset', 'imagefolder', '--root', '/nonexistent'], 'imagefolder root /nonexistent does not exist'),
    (['dmkd_distill', '--epochs', '0'], 'epochs must be at least 1, got 0'),
    (['dmkd_run', '--sampler', 'euler'], "argument --sampler: invalid choice: 'euler' (choose from 'ddpm', 'ddim', 'dpm++')"),
    (['dmkd_baseline', '--method', 'dafl', '--n-aug', '4'], 'dafl does not take --n-aug; it takes: --epoch-per-class'),
    (['dmkd_train_teacher', '--arch', 'resnet99'], 'unrecognized arguments: --arch resnet99'),
    (['dmkd_synthesize', '--n-per-class', '-3'], 'n_per_class must be at least 1, got -3'),
    (['dmkd_sweep', '/nonexistent.yaml'], 'Sweep file /nonexistent.yaml not found'),
]


def _run(cmd, tmp, **env):
    return subprocess.run([bin_path(cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=300, cwd=tmp,
                          env=dict(os.environ, DMKD_REPORTS=str(tmp / 'reports'), **env))


def _here(cmd, tmp, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """`cmd` through its console script's own entry point in this process (what `_run` runs, without a second start-up
    of torch and dmkd): its exit status and output as `_run` gives them. A traceback would fail the test here."""
    (main,) = [e for e in entry_points(group='console_scripts') if e.name == cmd[0]]
    monkeypatch.setattr(sys, 'argv', list(cmd))
    monkeypatch.setenv('DMKD_REPORTS', str(tmp / 'reports'))
    monkeypatch.chdir(tmp)
    try: main.load()(); code = 0
    except SystemExit as e: code = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(cmd, code, out.out, out.err)


#: each console script's first mistake runs from a shell (the installed script, its exit status); the others in-process
SHELL = {i for i, (cmd, _) in enumerate(MISTAKES) if cmd[0] not in [c[0] for c, _ in MISTAKES[:i]]}


@pytest.mark.parametrize('i', range(len(MISTAKES)), ids=[' '.join(c) for c, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(i, tmp_path, monkeypatch, capsys):
    cmd, says = MISTAKES[i]
    p = _run(cmd, tmp_path) if i in SHELL else _here(cmd, tmp_path, monkeypatch, capsys)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f'{cmd[0]}: error: ') and says in last and 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert not list(tmp_path.rglob('*.json'))                       # nothing was run or recorded


def test_a_sweep_file_with_three_mistakes_is_one_error_listing_them(tmp_path):
    (tmp_path / 'bad.yaml').write_text("name: bad\njobs:\n  - {name: a, notebook: nb.ipynb, gird: {x: [1]}}\n"
                                       "select: [{job: a, by: student_val_acc, sets: x}]\nexecutor: {kind: ray, partition: gpu}\n")
    p = _run(['dmkd_sweep', str(tmp_path / 'bad.yaml')], tmp_path)
    assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert p.stderr.startswith('dmkd_sweep: error: ') and '3 mistakes' in p.stderr, p.stderr
    assert all(s in p.stderr for s in ('line 3, jobs[0] (a).gird', 'line 4, select[0].sets', 'line 5, executor')), p.stderr
    debug = _run(['dmkd_sweep', str(tmp_path / 'bad.yaml')], tmp_path, DMKD_DEBUG='1')
    assert debug.returncode == 1 and 'Traceback' in debug.stderr          # the traceback, when asked for


@pytest.mark.parametrize('script', SCRIPTS)
def test_version(script, tmp_path, monkeypatch, capsys):
    "In-process: every script already ran from a shell above (its first mistake)."
    import dmkd
    p = _here([script, '--version'], tmp_path, monkeypatch, capsys)
    assert p.returncode == 0 and p.stdout.strip() == f'{script} {dmkd.__version__}', (p.stdout, p.stderr[-500:])


def test_baseline_help_lists_the_methods_and_each_methods_own_flags(tmp_path, monkeypatch, capsys):
    """`dmkd_baseline --help` says its `--method` default (deepinversion) and lists every method; with `--method X` the
    help lists X's own parameters with their defaults, and those flags reach the run's `params`."""
    from dmkd.runs import run_parser
    plain = _here(['dmkd_baseline', '--help'], tmp_path, monkeypatch, capsys).stdout
    assert '(default: deepinversion)' in plain and 'dafl (DAFL)' in plain and 'd4m (D4M)' in plain
    assert "DeepInversion's own parameters" in plain and '--competition-weight' in plain
    dafl = _here(['dmkd_baseline', '--method', 'dafl', '--help'], tmp_path, monkeypatch, capsys).stdout
    assert "DAFL's own parameters (--method dafl)" in dafl and '--act-weight' in dafl and '(default: 0.1)' in dafl
    assert '--competition-weight' not in dafl                       # another method's parameter is not offered
    args = vars(run_parser('deepinversion', 'dmkd_baseline', 'dafl').parse_args(['--method', 'dafl', '--act-weight',
                                                                                 '0.2', '--ngf=16']))
    assert (args['hp_act_weight'], args['hp_ngf'], args['hp_ie_weight']) == (0.2, 16, None)
