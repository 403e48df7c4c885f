#!/usr/bin/env python
"""Execute the tutorial notebooks at their defaults and keep their outputs in `nbs/`, so the repository page shows results.

    python tools/run_tutorials.py                      # distill, synthesis, baselines, report
    python tools/run_tutorials.py distill report       # some of them
    python tools/run_tutorials.py --check              # only check the committed outputs (what tests/test_notebooks.py checks)

Each notebook runs with papermill at the defaults of its `parameters` cell (a quick CPU run; the caches under
`data/cache` are used and filled as usual, results records go to a scratch reports folder, never into `reports/`).
The outputs are then made fit to commit:

- progress bars go: tqdm's stderr lines ("45%|####  | 9/20", "0it [00:00, ?it/s]") and its widget views ("0/0");
- live widgets (the synthesis explorer) keep no view in the file (no kernel on a repository page); the static panel
  the notebook draws for papermill stays;
- this machine's absolute paths become paths relative to the repository;
- figures are re-encoded with a 256-colour palette (a few times smaller, the same to the eye);
- papermill's metadata goes, then `nbdev_clean` strips execution counts and metadata as for every notebook.

Outputs are a snapshot of one run at the defaults, not a test: rerun this after changing what a tutorial shows.
"""
from __future__ import annotations

import argparse, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ('distill', 'synthesis', 'baselines', 'report')
BAR = re.compile(r'\d+%\|.*\||\b\d+it \[|\?it/s\]|\d+/\d+ \[\d\d:\d\d')   # a tqdm progress line
WIDGET = 'application/vnd.jupyter.widget-view+json'


def shrink_png(b64: str) -> str:
    "The PNG re-encoded with a 256-colour palette (plots and image grids look the same, files are 3-4x smaller), if smaller."
    import base64, io
    from PIL import Image
    raw = base64.b64decode(b64)
    im = Image.open(io.BytesIO(raw))
    q = im.convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO(); q.save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else b64


def clean_outputs(nb: dict, root: Path = ROOT) -> dict:
    "Drop progress bars and widget views from `nb`'s outputs, and write this machine's paths relative to `root`."
    prefix = str(root.resolve()) + '/'
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        outs = []
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream':
                text = ''.join(o['text']) if isinstance(o['text'], list) else o['text']
                lines = [ln.split('\r')[-1] for ln in text.split('\n')]
                if o.get('name') == 'stderr': lines = [ln for ln in lines if not BAR.search(ln)]
                text = re.sub(r'/tmp/ipykernel_\d+/\d+\.py:(\d+)', r'<cell line \1>', '\n'.join(lines).replace(prefix, ''))   # a warning's kernel file
                if not text.strip(): continue
                o['text'] = text
            elif o.get('output_type') in ('display_data', 'execute_result'):
                data = o.get('data', {})
                if WIDGET in data: continue
                if 'image/png' in data: data['image/png'] = shrink_png(''.join(data['image/png']).replace('\n', ''))
                for k, v in list(data.items()):
                    if k.startswith('text/'):
                        data[k] = (''.join(v) if isinstance(v, list) else v).replace(prefix, '')
                if not data: continue
            elif o.get('output_type') == 'error':
                raise RuntimeError(f"the notebook failed: {o.get('ename')}: {o.get('evalue')}")
            outs.append(o)
        c['outputs'] = outs
        c.get('metadata', {}).pop('papermill', None); c.get('metadata', {}).pop('execution', None)
    for k in ('papermill', 'widgets'): nb.get('metadata', {}).pop(k, None)
    return nb


def problems(nb: dict, root: Path = ROOT) -> list:
    "What is wrong with a committed tutorial's outputs: none at all, progress bars, widget views, errors, absolute paths."
    out, n = [], 0
    prefix = str(root.resolve())
    for i, c in enumerate(nb['cells']):
        for o in c.get('outputs', []) if c['cell_type'] == 'code' else []:
            n += 1
            text = json.dumps(o)
            if o.get('output_type') == 'error': out.append(f'cell {i}: an error output')
            if o.get('output_type') == 'stream' and BAR.search(''.join(o['text'])): out.append(f'cell {i}: a progress bar')
            if WIDGET in o.get('data', {}): out.append(f'cell {i}: a widget view (nothing to show without a kernel)')
            if prefix in text or re.search(r'/(?:tmp|root|home)/[\w.-]+/', text): out.append(f'cell {i}: an absolute path of a machine')
    if n == 0: out.append('no outputs: run python tools/run_tutorials.py')
    return out


def run(name: str, reports: Path) -> float:
    import papermill as pm
    f = ROOT / 'nbs' / f'{name}.ipynb'
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / f.name
        env_old = os.environ.get('DMKD_REPORTS')
        if name != 'report': os.environ['DMKD_REPORTS'] = str(reports)   # records of this run: a scratch folder
        params = dict(out_root=str(reports / 'report')) if name == 'report' else {}   # the report's tables: not over reports/
        try: pm.execute_notebook(str(f), str(out), parameters=params, cwd=str(f.parent), progress_bar=False, kernel_name='python3')
        finally:
            if env_old is None: os.environ.pop('DMKD_REPORTS', None)
            else: os.environ['DMKD_REPORTS'] = env_old
        nb = json.loads(out.read_text(encoding='utf-8'))
        for c in nb['cells']:   # the injected scratch out_root: as the defaults would print it
            if 'injected-parameters' in c.get('metadata', {}).get('tags', []): nb['cells'].remove(c); break
        for scratch in (reports / 'report', reports):   # the scratch folders, as the defaults would print them
            nb = json.loads(json.dumps(nb).replace(str(scratch) + '/', 'reports/').replace(str(scratch), 'reports'))
        nb = clean_outputs(nb)
    with open(f, 'w', encoding='utf-8') as fh: json.dump(nb, fh, indent=1, ensure_ascii=False); fh.write('\n')
    subprocess.run([shutil.which('nbdev_clean') or 'nbdev_clean', '--fname', str(f)], cwd=ROOT, check=True)
    return time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('names', nargs='*', default=list(TUTORIALS), help=f'tutorials to run (default: {" ".join(TUTORIALS)})')
    ap.add_argument('--check', action='store_true', help='only check the committed outputs')
    a = ap.parse_args(argv)
    bad = [n for n in a.names if not (ROOT / 'nbs' / f'{n}.ipynb').exists()]
    if bad: ap.error(f'no notebook nbs/<name>.ipynb for {bad}; the tutorials are {", ".join(TUTORIALS)}')
    if not a.check:
        with tempfile.TemporaryDirectory() as scratch:
            for n in a.names: print(f'{n}: executed at its defaults in {run(n, Path(scratch)):.0f}s', flush=True)
    rc = 0
    for n in a.names:
        p = problems(json.loads((ROOT / 'nbs' / f'{n}.ipynb').read_text(encoding='utf-8')))
        print(f'{n}: ' + ('outputs fit to commit' if not p else '; '.join(p)))
        rc |= bool(p)
    return rc


if __name__ == '__main__':
    sys.exit(main())
