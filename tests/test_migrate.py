"""tools/migrate_ddpm_knobs.py: a reports folder made before the DDPM's knobs were nested in `StoreSpec` reads as
the same runs after it."""
import importlib.util, json
from pathlib import Path

import pytest
import yaml

from dmkd.data import Data
from dmkd.ddpm import DDPMConfig, ddpm_kwargs
from dmkd.runs import RunSpec, run_spec

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('migrate_ddpm_knobs', ROOT / 'tools' / 'migrate_ddpm_knobs.py')
migrate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(migrate)


def _old_run(folder: Path, size, steps, seed: int):
    "A diffusion run as the sweep wrote it before: the store spec's flat DDPM fields and a `ddpm` dict."
    spec = run_spec(dataset='cifar10', n_per_class=5).to_dict()
    src = {k: v for k, v in spec['source'].items() if k != 'ddpm'}
    spec['source'] = src | dict(ddpm_size=size, ddpm_steps=steps, ddpm=dict(seed=seed))
    used = DDPMConfig(dataset='cifar10', **ddpm_kwargs(size, steps), seed=seed).to_dict()
    (folder / 'results').mkdir(parents=True)
    (folder / 'results' / 'run-1.json').write_text(json.dumps(dict(spec=spec, ddpm_config=used, student_acc=12.5)))
    params = dict(dataset='cifar10', ddpm=dict(seed=seed), seed=seed)
    (folder / 'run.json').write_text(json.dumps(dict(kind='sweep_run', parameters=params)))
    (folder / 'parameters.yaml').write_text(yaml.safe_dump(params))
    return used


def test_old_records_migrate_to_the_same_ddpm_and_twice_changes_nothing(tmp_path, capsys):
    runs = tmp_path / 'runs' / 'toy'
    used = {n: _old_run(runs / 'main' / n, size, steps, seed)
            for n, size, steps, seed in (('seed0', 16, 150, 0), ('seed1', None, None, 1))}
    migrate.main(str(tmp_path))
    assert "2 records' specs and 4 run parameter files migrated" in capsys.readouterr().out
    for n, cfg in used.items():
        rec = json.loads((runs / 'main' / n / 'results' / 'run-1.json').read_text())
        src = rec['spec']['source']
        assert 'ddpm_size' not in src and 'ddpm_steps' not in src and 'dataset' not in src['ddpm']
        got = RunSpec.from_dict(rec['spec']).source.ddpm_config(Data('cifar10'))
        assert got == DDPMConfig(**cfg) and rec['student_acc'] == 12.5          # the same DDPM; the numbers untouched
        params = json.loads((runs / 'main' / n / 'run.json').read_text())['parameters']
        assert params['ddpm_seed'] == int(n[-1]) and 'ddpm' not in params
        assert yaml.safe_load((runs / 'main' / n / 'parameters.yaml').read_text()) == params
    migrate.main(str(tmp_path))
    assert "0 records' specs and 0 run parameter files migrated" in capsys.readouterr().out


def test_a_record_whose_spec_disagrees_with_its_ddpm_is_refused(tmp_path):
    folder = tmp_path / 'runs' / 'toy' / 'main' / 'seed0'
    _old_run(folder, 16, 150, 0)
    path = folder / 'results' / 'run-1.json'
    rec = json.loads(path.read_text())
    rec['ddpm_config']['steps'] = 999                                           # not the DDPM the spec describes
    path.write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match='the record used'): migrate.main(str(tmp_path))
    assert json.loads(path.read_text()) == rec                                  # left as it was
