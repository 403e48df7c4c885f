"""README.md is generated from nbs/index.ipynb by `python tools/readme.py`; these tests check that the two agree and that
`.ci/run` runs the README's test command exactly."""
import re, sys

from conftest import ROOT
sys.path.insert(0, str(ROOT / 'tools'))
from readme import render_readme


def readme_test_command(readme: str) -> str:
    "The command in the README's '## Test' section."
    sec = readme.split('## Test', 1)[1]
    return re.search(r'```sh\n(.+?)\n```', sec, re.S).group(1).strip()


def test_readme_matches_index():
    assert (ROOT / 'README.md').read_text() == render_readme(), \
        "README.md differs from nbs/index.ipynb: run `python tools/readme.py` and commit it."


def test_ci_runs_the_readme_test_command():
    cmd = readme_test_command((ROOT / 'README.md').read_text())
    assert cmd == 'pytest -n 2 tests'
    ci = (ROOT / '.ci' / 'run').read_text()
    assert any(line.strip() == cmd for line in ci.splitlines()), f"`.ci/run` must run the README's test command `{cmd}` on a line of its own."


def test_readme_states_install_and_main_job():
    readme = (ROOT / 'README.md').read_text()
    assert 'pip install -e ".[dev]"' in readme
    assert 'papermill nbs/distill.ipynb out.ipynb -p teacher vgg11' in readme

