"""Compare the main tables of two builds of one sweep (e.g. the committed reports and a from-scratch rebuild elsewhere).

    python tools/compare_builds.py reports /tmp/rebuild --sweep digits --out reports/tables/digits_rebuild.md

For each method and teacher→student pair: mean ± std (n) of the test accuracy in each build, the difference, the
spread √(s₁² + s₂²) of the two rows, whether the difference lies within it, and whether every run is bit-identical.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dmkd.sweeps import collect_records
from dmkd.tables import method_label


def runs(root, sweep):
    d = collect_records(root, sweep)
    d = d[d.job.str.startswith('main')].copy()
    d['pair'] = d.teacher + '→' + d.student
    return d


def compare_builds(a: pd.DataFrame, b: pd.DataFrame, value: str = 'student_acc') -> pd.DataFrame:
    rows = []
    for (m, pair), ga in a.groupby(['method', 'pair']):
        gb = b[(b.method == m) & (b.pair == pair)]
        if not len(gb): continue
        sa, sb = ga.sort_values('seed')[value].to_numpy(float), gb.sort_values('seed')[value].to_numpy(float)
        spread = float(np.hypot(sa.std(ddof=1) if len(sa) > 1 else 0, sb.std(ddof=1) if len(sb) > 1 else 0))
        diff = sb.mean() - sa.mean()
        rows.append({'method': method_label(m), 'pair': pair,
                     'build A': f"{sa.mean():.2f} ± {sa.std(ddof=1) if len(sa) > 1 else 0:.2f} ({len(sa)})",
                     'build B': f"{sb.mean():.2f} ± {sb.std(ddof=1) if len(sb) > 1 else 0:.2f} ({len(sb)})",
                     'B − A': round(diff, 2), 'spread': round(spread, 2), 'within ±': 'yes' if abs(diff) <= spread else 'no',
                     'bit-identical runs': f"{int((sa == sb).sum())}/{len(sa)}" if len(sa) == len(sb) else '—'})
    return pd.DataFrame(rows)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('a'); ap.add_argument('b'); ap.add_argument('--sweep', default='digits'); ap.add_argument('--out')
    ap.add_argument('--title', default='')
    args = ap.parse_args()
    t = compare_builds(runs(args.a, args.sweep), runs(args.b, args.sweep))
    text = (f"# {args.title}\n\n" if args.title else '') + t.to_markdown(index=False) + '\n'
    if args.out: Path(args.out).write_text(text)
    print(text)
