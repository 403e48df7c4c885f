"""Every notebook of `nbs/`, through the tools people use on them.

- **Library notebooks** (`nbs/NN_*.ipynb`, the source of `dmkd/`) run as `nbdev_test --path` runs them (execnb, in-process,
  in the pytest worker: examples and `test_eq`-style asserts on tiny configurations). Their `#| slow` cells (full-size
  teachers and the digits DDPM) run in the slow tier: `pytest -m slow tests`.
- **Experiment notebooks** (`nbs/distill.ipynb`, …) run through papermill, as `dmkd_sweep` and a user run them, with
  tiny parameters (`SMOKE`): the plumbing, figures and records, not the accuracy. All of them share the run's one
  teacher (resnet8, 3 epochs) and one DDPM (20 steps), so each is trained once. The executed copies are kept for the
  docs test (`tests/test_docs.py` builds the site from them instead of executing the notebooks again).
- **The slow tier** runs every experiment notebook at its own defaults (a quick CPU run each) and checks the main job's
  accuracy on the real digits test split.
"""
import json, os, re, subprocess, sys, time
from pathlib import Path

import nbformat
import pytest

from conftest import NBS, ROOT, bin_path, once_per_run, run_root

TEACHER = dict(teacher='resnet8', teacher_epochs=3)       # one tiny teacher for every experiment notebook of a run
DDPM = dict(ddpm_steps=20)                                # one tiny in-project DDPM (default width, 20 optimiser steps)
KD = dict(student='resnet8', epochs=2, batch_size=32)
SMOKE = {  # tiny parameters per experiment notebook; the slow tier runs the notebooks' own defaults
    'distill': TEACHER | DDPM | KD | dict(n_per_class=5, num_steps=5),
    'synthesis': TEACHER | DDPM | dict(n_per_class=5, num_steps=5, grid_scales='1,4', grid_steps='2,5'),
    'baselines': TEACHER | KD | dict(method='deepinversion', n_per_class=5, params=dict(iterations=20)),
    'ablation_fidelity': TEACHER | DDPM | KD | dict(guidance_scales=[1.0, 4.0], num_steps_grid=[2, 5], n_per_class=5),
    'ablation_strength': TEACHER | DDPM | KD | dict(axis='strength', values=[0.5, 1.0], n_per_class=5, num_steps=5),
    'continual': dict(methods=['finetune', 'er', 'task_arithmetic'], data=['real', 'ddpm'], n_tasks=2, epochs=1, n_per_class=5, memory=20, ddpm_steps=20, num_steps=5),
    'report': dict(sweep='digits', reports=str(ROOT / 'reports')),
    # its own DDPM (16 steps, not the shared 20): a DDPM another notebook already finished has no curve left to measure
    'generator_curve': TEACHER | dict(ddpm_steps=16, at=[8], n_per_class=5, num_steps=5),
}


def _is_library(f: Path) -> bool:
    return any(c.cell_type == 'code' and re.search(r'^#\|\s*default_exp\s', c.source, re.M) for c in nbformat.read(f, as_version=4).cells)


def _has_flag(f: Path, flag: str) -> bool:
    return any(c.cell_type == 'code' and re.search(rf'^#\|\s*{flag}\b', c.source, re.M) for c in nbformat.read(f, as_version=4).cells)


NOTEBOOKS = sorted(f for f in NBS.glob('*.ipynb') if not f.name.startswith(('_', '.')) and f.name != 'index.ipynb')
LIBRARY = [f for f in NOTEBOOKS if _is_library(f)]
EXPERIMENTS = [f for f in NOTEBOOKS if f not in LIBRARY]


def test_every_experiment_notebook_has_smoke_parameters():
    "A new experiment notebook needs its tiny parameters here, or it would go untested; a misspelt one would be ignored by papermill."
    import papermill as pm
    assert sorted(f.stem for f in EXPERIMENTS) == sorted(SMOKE), f"add tiny parameters to SMOKE in {__file__}"
    for name, params in SMOKE.items():
        unknown = set(params) - set(pm.inspect_notebook(str(NBS / f'{name}.ipynb')))
        assert not unknown, f"SMOKE[{name!r}] sets {sorted(unknown)}, which nbs/{name}.ipynb does not declare in its parameters cell"


def test_experiment_parameters_are_the_run_parameters():
    """A notebook parameter named like a run parameter (`dmkd.runs.run_params()`) has its type (None allowed for "unset"), so a
    knob cannot mean one thing in a notebook and another in the configs; where-to-run parameters are named as `run()` names them."""
    import typing
    import papermill as pm
    from dmkd.runs import run_params
    P = run_params()
    def base(t):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return (args[0] if args else t).__name__
    for f in EXPERIMENTS:
        for name, p in pm.inspect_notebook(str(f)).items():
            assert name not in ('data_root', 'cache_root', 'reports_root'), f"{f.name}: call {name!r} {name.split('_')[0]!r}, as run() and the CLI do"
            if name in P:
                got = re.sub(r'^Optional\[(.*)\]$', r'\1', p['inferred_type_name'])
                assert got == base(P[name]['type']), f"{f.name}: {name} is {p['inferred_type_name']}, the run parameter is {P[name]['type']}"


def test_a_teacher_named_in_a_notebook_trains_on_its_own_recipe():
    """A notebook left at its defaults but for the teacher trains that teacher on its architecture's recipe: airbench93 at
    20 epochs is `teacher_preset('cifar10_cpu')`, one cache entry for a sweep, the generator curve and the CLI (the ablation
    notebooks' teacher batch size and learning rate once defaulted to sgd's 32 and 0.05: an airbench93 teacher trained at
    batch 32 instead of 1024), and a resnet20 teacher keeps sgd's, the committed digits records' keys."""
    import papermill as pm
    from dmkd.runs import run_spec, spec_params
    from dmkd.train import TrainConfig, teacher_preset
    for f in EXPERIMENTS:
        ns = {k: eval(p['default']) for k, p in pm.inspect_notebook(str(f)).items()}
        if 'teacher' not in ns or 'teacher_epochs' not in ns: continue
        spec = run_spec(**spec_params(ns | dict(dataset='imagefolder', teacher='airbench93', teacher_epochs=20)))
        assert spec.teacher == teacher_preset('cifar10_cpu'), (f.name, spec.teacher)
        spec = run_spec(**spec_params(ns | dict(teacher='resnet20')))
        assert (spec.teacher.batch_size, spec.teacher.lr) == (32, 0.05), (f.name, spec.teacher)
        assert spec.teacher == TrainConfig(arch='resnet20', epochs=ns['teacher_epochs']), f.name


@pytest.mark.parametrize('name', ['distill', 'synthesis', 'baselines', 'report'])
def test_tutorial_outputs_are_committed(name):
    """The tutorials keep one run's outputs in `nbs/` (`python tools/run_tutorials.py`), so the repository page shows results:
    outputs present with at least one figure, no error, no progress bar, no widget view, no absolute path of a machine."""
    sys.path.insert(0, str(ROOT / 'tools'))
    from run_tutorials import problems
    nb = json.loads((NBS / f'{name}.ipynb').read_text(encoding='utf-8'))
    assert problems(nb) == [], f"nbs/{name}.ipynb: run python tools/run_tutorials.py {name}"
    figs = [o for c in nb['cells'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {}) or 'image/svg+xml' in o.get('data', {})]
    assert figs, f"nbs/{name}.ipynb shows no figure"
    assert not re.search(r'/(?:tmp|root|home)/[\w.-]+/', json.dumps([c.get('outputs', []) for c in nb['cells']])), 'a machine path in the outputs'


def nbdev_test(nb: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [bin_path('nbdev_test'), '--path', str(nb)] + (['--flags', ' '.join(flags)] if flags else [])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def _execute_here(nb: Path, out: Path):
    """Execute library notebook `nb` as `nbdev_test --path` does (`tools/build_docs.py`'s `_execute`: execnb in-process, from
    the notebook's folder, the `tst_flags` cells skipped) in this worker, and write the executed copy to `out`. In-process,
    as nbdev_test runs several notebooks in one process: a process of its own per notebook spent a torch import and
    start-up each, ~5 s of 2 cores per notebook. What a notebook leaves behind in the process is put back: the
    matplotlib backend (execnb switches to inline), IPython's shell instance and `IN_TEST`."""
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from execnb.nbio import write_nb
    if str(ROOT / 'tools') not in sys.path: sys.path.insert(0, str(ROOT / 'tools'))
    from build_docs import _execute
    backend, in_test = plt.get_backend(), os.environ.get('IN_TEST')
    try: write_nb(_execute(str(nb))['nb'], out)
    except RuntimeError as e: pytest.fail(f"{nb.relative_to(ROOT)} failed (as nbdev_test --path runs it):\n{str(e)[-8000:]}")
    finally:
        plt.close('all'); plt.switch_backend(backend); InteractiveShell.clear_instance()
        if in_test is None: os.environ.pop('IN_TEST', None)
        else: os.environ['IN_TEST'] = in_test


def executed_library(nb: Path) -> Path:
    """Library notebook `nb` executed once per test run (whichever worker asks first; the others wait and read it), kept under
    `<run>/notebooks/` beside the experiment notebooks, where the docs build takes its example outputs from: each library
    notebook is executed once per run, not once for its test and again for the docs."""
    return once_per_run(f'notebooks/{nb.name}', lambda tmp: _execute_here(nb, tmp))


@pytest.mark.parametrize('nb', LIBRARY, ids=lambda f: f.stem)
def test_library_notebook(nb):
    out = nbformat.read(executed_library(nb), as_version=4)
    assert not outputs(out, 'error'), f"{nb.name}: an error output"
    ran = [c for c in out.cells if c.cell_type == 'code' and c.get('outputs')]
    assert ran, f"{nb.name}: no cell produced output: was it executed?"


@pytest.mark.slow
@pytest.mark.parametrize('nb', [f for f in LIBRARY if _has_flag(f, 'slow')], ids=lambda f: f.stem)
def test_library_notebook_slow_cells(nb):
    p = nbdev_test(nb, 'slow')
    assert p.returncode == 0 and 'Success' in p.stdout, f"nbdev_test --flags slow --path {nb.relative_to(ROOT)} failed:\n{p.stderr[-8000:]}"


@pytest.mark.slow
def test_library_notebook_holds_at_two_threads():
    """The examples assert behaviour, not one machine's floats: the continual-learning notebook (whose forgetting and
    accuracy bounds once held at one thread only) passes `nbdev_test` at 2 threads as it does at 1 (the default tier)."""
    nb = NBS / '11_continual.ipynb'
    p = subprocess.run([bin_path('nbdev_test'), '--path', str(nb)], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS='2'))
    assert p.returncode == 0 and 'Success' in p.stdout, f"nbdev_test at 2 threads failed:\n{p.stderr[-8000:]}"


def papermill(name: str, out: Path, params: dict, reports: Path) -> nbformat.NotebookNode:
    "Execute `nbs/<name>.ipynb` with `params` through papermill (in a subprocess, as a sweep does); returns the executed notebook."
    import papermill as pm
    params = dict(params)
    if 'reports' in pm.inspect_notebook(str(NBS / f'{name}.ipynb')) and 'reports' not in params: params['reports'] = str(reports)
    if name == 'report': params['out_root'] = str(reports / 'report-out')
    cmd = [sys.executable, '-m', 'papermill', str(NBS / f'{name}.ipynb'), str(out), '--cwd', str(NBS), '--no-progress-bar', '-k', 'python3',
           '-y', json.dumps(params)]
    env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}    # the kernel's inline backend keeps the figures
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, f"papermill {name}.ipynb failed:\n{p.stderr[-8000:]}"
    return nbformat.read(out, as_version=4)


def executed(name: str) -> Path:
    """`nbs/<name>.ipynb` run once per test run with its `SMOKE` parameters (whichever worker asks first runs it; the others
    wait for it and read it): the executed copy under `<run>/notebooks/`, its records under `<run>/reports/<name>/`."""
    return once_per_run(f'notebooks/{name}.ipynb', lambda tmp: papermill(name, tmp, SMOKE[name], run_root() / 'reports' / name))


def outputs(nb: nbformat.NotebookNode, kind: str) -> list:
    "Every output of `kind` ('image/png', 'text/plain', 'stream', 'error') in the executed notebook."
    res = []
    for c in nb.cells:
        for o in c.get('outputs', []):
            if kind == 'stream' and o.output_type == 'stream': res.append(o.text)
            elif kind == 'error' and o.output_type == 'error': res.append(o)
            elif kind in o.get('data', {}): res.append(o['data'][kind])
    return res


def records(name: str) -> list:
    "The results records the notebook wrote, each with its file under `_path`."
    return [json.loads(p.read_text()) | dict(_path=str(p)) for p in sorted((run_root() / 'reports' / name).rglob('results/*.json'))]


def test_distill_notebook():
    nb = nbformat.read(executed('distill'), as_version=4)
    (rec,) = records('distill')
    assert rec['complete'] and rec['teacher'] == 'resnet8' and rec['student'] == 'resnet8' and rec['n_images'] == 50
    assert rec['ddpm_steps'] == 20 and len(rec['history']) == 2 and 0 <= rec['student_acc'] <= 100
    assert len(outputs(nb, 'image/png')) >= 2                                  # the store and the training curves
    assert any(f"record: {rec['_path']}" in s for s in outputs(nb, 'stream'))


def test_synthesis_notebook():
    nb = nbformat.read(executed('synthesis'), as_version=4)
    text = ''.join(outputs(nb, 'stream'))
    assert re.search(r'\n50 images, 1 shards', text), text[-2000:]
    assert 'agreement with the generated class' in text
    assert len(outputs(nb, 'image/png')) >= 3                                  # the store, the s x T grid, the explorer's panel
    assert any('application/vnd.jupyter.widget-view+json' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))


def test_baselines_notebook():
    nb = nbformat.read(executed('baselines'), as_version=4)
    (rec,) = records('baselines')
    assert rec['schema'] == 2 and rec['method'] == 'deepinversion' and rec['complete'] and not rec['uses_real_images']
    assert rec['params']['iterations'] == 20 and rec['params']['n_per_class'] == 5 and rec['spec']['source']['params'] == rec['params']
    assert rec['n_images'] == 50 and rec['synthesis_seconds'] > 0 and len(outputs(nb, 'image/png')) >= 1


def test_generator_curve_notebook():
    "The DDPM measured at step 8 and at its end (16): one table row each, agreement a percentage, the figure drawn."
    nb = nbformat.read(executed('generator_curve'), as_version=4)
    table = run_root() / 'reports' / 'generator_curve' / 'tables' / 'digits_generator_curve.csv'
    import pandas as pd
    df = pd.read_csv(table)
    assert df.step.tolist() == [8, 16] and df.agreement.between(0, 100).all() and (df.kid.notna()).all(), df
    assert df.train_seconds.is_monotonic_increasing and len(outputs(nb, 'image/png')) >= 1
    assert 'Real images: digits/val (180)' in (table.with_suffix('.md')).read_text()


@pytest.mark.parametrize('name, n', [('ablation_fidelity', 4), ('ablation_strength', 2)])
def test_ablation_notebooks(name, n):
    nb = nbformat.read(executed(name), as_version=4)
    recs = records(name)
    assert len(recs) == n and all(r['complete'] for r in recs), [r.get('complete') for r in recs]
    assert len({r['teacher_key'] for r in recs if 'teacher_key' in r}) <= 1      # one teacher across the grid
    assert len(outputs(nb, 'image/png')) >= 1


def test_continual_notebook():
    "Every method of the SMOKE list on real and synthetic images: one continual record each, its matrix, its provenance, the tables and figures."
    nb = nbformat.read(executed('continual'), as_version=4)
    recs = records('continual')
    assert sorted((r['method'], r['data']) for r in recs) == sorted((m, d) for m in SMOKE['continual']['methods'] for d in SMOKE['continual']['data'])
    for r in recs:
        assert r['kind'] == 'continual' and r['schema'] == 2 and len(r['acc_matrix']) == 2 and len(r['acc_matrix'][1]) == 2
        assert r['real_data']['model'] == ('digits/train' if r['data'] == 'real' else r['real_data']['model']) and r['real_data']['test']
    syn = [r for r in recs if r['data'] == 'ddpm']
    assert all(r['n_images'] == 50 and r['real_data']['model'].startswith('none directly') and not r['uses_real_images'] for r in syn)
    assert {tuple(r['lambdas_chosen']) != (None,) for r in recs if r['method'] == 'task_arithmetic'} == {True}
    text = ''.join(outputs(nb, 'stream'))
    assert 'average accuracy' in text and len(outputs(nb, 'image/png')) >= 2 and not outputs(nb, 'error')


def test_report_notebook():
    nb = nbformat.read(executed('report'), as_version=4)
    out = run_root() / 'reports' / 'report' / 'report-out'
    assert (out / 'tables' / 'digits_main.md').exists() and list((out / 'figures').glob('*.png'))
    assert not outputs(nb, 'error')


def test_one_teacher_and_one_ddpm_per_run():
    """Nothing is trained twice: the experiment notebooks of a run (and the tests) share one small teacher and one small DDPM,
    each trained once, in one cache folder."""
    for name in ('distill', 'synthesis', 'ablation_fidelity', 'ablation_strength'): executed(name)
    cache = Path(os.environ['DMKD_CACHE'])
    ddpms = [d for d in (cache / 'generators').glob('ddpm-digits-*') if d.is_dir() and not d.name.endswith('.run')
             and json.loads((d / 'dmkd.json').read_text())['config']['steps'] == DDPM['ddpm_steps']]
    teachers = [d for d in (cache / 'teachers').glob('digits-resnet8-*') if d.is_dir()
                and json.loads((d / 'run.json').read_text())['config']['epochs'] == TEACHER['teacher_epochs']]
    assert len(ddpms) == 1 and len(teachers) == 1, (ddpms, teachers)
    keys = {json.loads((d / 'manifest.json').read_text())['spec']['generator'].get('key') for d in (cache / 'stores').iterdir()
            if (d / 'manifest.json').exists() and d.name.startswith('digits-ddpm-') and '-n5-' in d.name}   # the SMOKE stores
    assert keys == {ddpms[0].name.rsplit('-', 1)[1]}, keys                    # every store of the notebooks came from that one DDPM


@pytest.mark.slow
@pytest.mark.parametrize('name', [f.stem for f in EXPERIMENTS])
def test_experiment_notebook_at_defaults(name, tmp_path):
    "The notebook as a user first runs it (its own defaults: a quick CPU run); the main job reaches its stated accuracy."
    t0 = time.time()
    params = dict(out_root=str(tmp_path / 'report-out')) if name == 'report' else {}
    nb = papermill(name, tmp_path / f'{name}.ipynb', params, tmp_path / 'reports')
    assert not outputs(nb, 'error')
    print(f"{name}: {time.time() - t0:.0f}s at its defaults")
    if name == 'distill':
        (rec,) = [json.loads(p.read_text()) for p in (tmp_path / 'reports' / 'results').glob('*.json')]
        assert rec['teacher'] == 'vgg11' and rec['teacher_acc'] > 95, rec['teacher_acc']
        assert rec['student_acc'] > 90, rec['student_acc']      # README: about 98% on the real digits test split
