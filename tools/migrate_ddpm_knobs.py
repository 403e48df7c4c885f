"""Rewrite a reports folder made before the in-project DDPM's knobs were nested in `StoreSpec`.

A diffusion record's `spec.source` had `ddpm_size`, `ddpm_steps` and a `ddpm` dict of the DDPM's other fields; it now
has one `ddpm` dict of the DDPM's own knobs (`StoreSpec.to_dict`). A sweep run's parameters (`run.json` and
`parameters.yaml`) had a `ddpm` dict (a job's `vary: [generator]` set its seed there); they now have the flat run
parameters `ddpm_<field>`, as the sweep gives them today, so the sweep still finds those runs finished.

Nothing else changes: the DDPM each migrated spec describes is checked to be the one the record says it used (its
`ddpm_config`), so every cache key and every number stays. Files already in the new layout are left as they are, so
running it twice changes nothing.

    python tools/migrate_ddpm_knobs.py [REPORTS]     # default: reports (its runs/ folder)
"""
import sys
from pathlib import Path

import yaml

from dmkd.core import read_json, write_json
from dmkd.data import Data
from dmkd.ddpm import DDPMConfig
from dmkd.runs import RunSpec


def migrate_record(path: Path) -> bool:
    "Nest the DDPM's knobs of one results record's spec; True when the file changed."
    rec = read_json(path)
    spec = rec.get('spec')
    if not spec or spec['source'].get('kind') != 'store' or 'ddpm_steps' not in spec['source']: return False
    new = RunSpec.from_dict(spec)              # reads the old layout
    if rec.get('ddpm_config'):                 # the same DDPM as the record used
        t = spec['teacher']
        used = DDPMConfig(**rec['ddpm_config'])
        got = new.source.ddpm_config(Data(t['dataset'], t['size'], t['corpus_fraction']))
        if got != used: raise SystemExit(f"{path}: the migrated spec describes {got}, the record used {used}")
    rec['spec'] = spec | dict(source=dict(kind='store', **new.source.to_dict()))    # the rest as it was
    if RunSpec.from_dict(rec['spec']) != new: raise SystemExit(f"{path}: the new spec does not read back")
    write_json(rec, path)
    return True


def flat_parameters(params: dict) -> dict | None:
    "A sweep run's parameters with the `ddpm` dict flattened to `ddpm_<field>`; None when there is none."
    if not isinstance(params.get('ddpm'), dict): return None
    out = {k: v for k, v in params.items() if k != 'ddpm'}
    for k, v in params['ddpm'].items():
        if out.get(f'ddpm_{k}', v) != v: raise SystemExit(f"ddpm_{k} is given twice: {out[f'ddpm_{k}']} and {v}")
        out[f'ddpm_{k}'] = v
    return out


def migrate_run(folder: Path) -> int:
    "Flatten one sweep run's parameters in its `run.json` and `parameters.yaml`; the number of files changed."
    n = 0
    if (folder / 'run.json').exists():
        run = read_json(folder / 'run.json')
        flat = flat_parameters(run.get('parameters') or {})
        if flat is not None: write_json(run | dict(parameters=flat), folder / 'run.json'); n += 1
    if (folder / 'parameters.yaml').exists():
        flat = flat_parameters(yaml.safe_load((folder / 'parameters.yaml').read_text()) or {})
        if flat is not None: (folder / 'parameters.yaml').write_text(yaml.safe_dump(flat)); n += 1
    return n


def main(reports: str = 'reports'):
    runs = Path(reports) / 'runs'
    if not runs.is_dir(): raise SystemExit(f"No runs/ folder in {reports}: give the reports root.")
    recs = sum(migrate_record(p) for p in sorted(runs.glob('*/*/*/results/*.json')))
    files = sum(migrate_run(f) for f in sorted(runs.glob('*/*/*')) if f.is_dir())
    print(f"{runs}: {recs} records' specs and {files} run parameter files migrated")


if __name__ == '__main__':
    main(*sys.argv[1:])
