"""The synthesis explorer live in JupyterLab, driven by headless Chromium as a user drives it.

`nbs/synthesis.ipynb` (as this run executed it with its tiny `SMOKE` parameters, so the teacher and the DDPM are in the
run's cache) is opened in a JupyterLab server started for the test, every cell is run from Lab's Run menu, and then:

- the explorer shows exactly one panel (the live one: the static panel drawn for papermill is replaced once Lab shows
  the widget) and says how long its redraw took;
- a slider moved with the keyboard (one step, as a released drag) triggers one redraw, whose status line names the
  new value and its time;
- the labels are readable (not cut: each label's text fits its box).

A screenshot of the explorer after the move goes to `tests/artifacts/lab_explorer.png`; the redraw time is printed.
"""
import os, re, shutil, socket, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import ROOT, run_root
from test_docs import CHROMIUM, FLAGS, _need_browser

ART = ROOT / 'tests' / 'artifacts'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 over a folder holding the executed synthesis notebook; yields (url, token)."
    _need_browser()
    from test_notebooks import executed
    d = tmp_path_factory.mktemp('lab')
    shutil.copy(executed('synthesis'), d / 'synthesis.ipynb')
    port, token = _free_port(), 'dmkd-test'
    env = os.environ | dict(DMKD_REPORTS=str(d / 'reports'), JUPYTER_CONFIG_DIR=str(d / '.jupyter'), JUPYTER_RUNTIME_DIR=str(d / '.runtime'))
    env.pop('MPLBACKEND', None)   # the kernel's inline backend draws the figures
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1', f'--ServerApp.token={token}',
           f'--ServerApp.root_dir={d}', '--LabApp.news_url=', '--allow-root', '--LabApp.expose_app_in_browser=True', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    log = open(d / 'lab.log', 'w')
    p = subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    import urllib.request
    for _ in range(120):
        try: urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
        except Exception:
            if p.poll() is not None: break
            time.sleep(0.5)
    else: pytest.fail(f'JupyterLab did not start:\n{(d / "lab.log").read_text()[-3000:]}')
    if p.poll() is not None: pytest.fail(f'JupyterLab exited:\n{(d / "lab.log").read_text()[-3000:]}')
    yield url, token
    p.terminate()
    try: p.wait(20)
    except subprocess.TimeoutExpired: p.kill()


#: JS: the current notebook's kernel is idle and connected (Lab's session API, exposed by `expose_app_in_browser`).
KERNEL_READY = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && k.connectionStatus === 'connected'; }"""
#: JS: no code cell of the current notebook has an execution count (its outputs were cleared).
NOT_RUN = """() => !window.jupyterapp.shell.currentWidget.content.widgets.some(c => c.model.type === 'code' && c.model.executionCount)"""
#: JS: some code cell of the current notebook has run since its outputs were cleared (an execution count, or a busy kernel).
RAN = """() => { const w = window.jupyterapp.shell.currentWidget;
  const cells = w && w.content ? w.content.widgets : [];
  return cells.some(c => c.model.type === 'code' && c.model.executionCount) ||
         w.sessionContext.session.kernel.status === 'busy'; }"""


def test_explorer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    url, token = lab
    ART.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / 'profile'), executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                    viewport=dict(width=1280, height=1000))
        page = ctx.new_page()
        page.goto(f'{url}/lab/tree/synthesis.ipynb?token={token}')
        page.wait_for_selector('.jp-Notebook', timeout=120_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"], .jp-mod-idle, .jp-KernelStatus', timeout=120_000)
        page.wait_for_timeout(2000)
        page.wait_for_function('() => window.jupyterapp && window.jupyterapp.commands.isEnabled("notebook:run-all-cells")', timeout=120_000)
        # the notebook's kernel started and connected (on a loaded machine "Run All" sent earlier ran nothing: CI's
        # screenshots showed Lab idle with no cell executed)
        page.wait_for_function(KERNEL_READY, timeout=300_000)
        page.evaluate('() => window.jupyterapp.commands.execute("notebook:clear-all-cell-outputs")')   # papermill's counts go
        page.wait_for_function(NOT_RUN, timeout=30_000)
        page.evaluate('() => window.jupyterapp.commands.execute("notebook:run-all-cells")')   # Lab's Run > Run All Cells
        try: page.wait_for_function(RAN, timeout=120_000)                      # the first cells ran
        except Exception:                                                      # once more, if the first request was lost
            page.evaluate('() => window.jupyterapp.commands.execute("notebook:run-all-cells")')
        # the explorer: knobs, a status line and one panel, the live one (drawn when Lab shows the widget)
        status = page.locator('.widget-html-content:has-text("drawn in")')
        try: status.wait_for(timeout=int(os.environ.get('DMKD_LAB_TIMEOUT', 300)) * 1000)
        except Exception:
            page.screenshot(path=str(ART / 'lab_explorer_failed.png'), full_page=True)
            said = page.evaluate('''() => [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText)
                                         .filter(t => /Error|Traceback/.test(t)).map(t => t.slice(-3000))''')
            raise AssertionError(f"the explorer never drew; the notebook's errors in Lab: {said}") from None
        first = status.inner_text()
        cell = page.locator('.jp-Cell:has(.widget-slider)')
        imgs = cell.locator('.jp-OutputArea-output img')
        page.wait_for_timeout(1000)
        n_imgs = imgs.count()
        # readable labels: every slider's label fits its box
        cut = page.evaluate('''() => [...document.querySelectorAll('.widget-slider .widget-label, .widget-text .widget-label')]
                                     .filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.textContent)''')
        # one keyboard step on the guidance slider: released at once, so one redraw
        handle = cell.locator('.widget-slider').first.locator('.noUi-handle')
        handle.focus(); handle.press('ArrowRight')
        page.locator('.widget-html-content:has-text("drawn in"):has-text("s=2.5")').wait_for(timeout=120_000)
        after = page.locator('.widget-html-content:has-text("drawn in")').inner_text()
        area = cell.locator('.jp-Cell-outputWrapper')
        area.scroll_into_view_if_needed()
        area.screenshot(path=str(ART / 'lab_explorer.png'))
        n_after = imgs.count()
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]:has-text("Error")').count()
        ctx.close()
    secs = [float(x) for x in re.findall(r'drawn in ([\d.]+) s', first + after)]
    print(f"explorer: first live redraw {secs[0]:.2f} s, after the move {secs[-1]:.2f} s ({first!r} -> {after!r})")
    assert n_imgs == 1 and n_after == 1, f'the explorer cell shows {n_imgs} then {n_after} panels; one (the live one) expected'
    assert not cut, f'labels cut off: {cut}'
    assert 's=2.5' in after and 's=2.5' not in first and len(secs) == 2
    assert errors == 0
