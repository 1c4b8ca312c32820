"""Repository checks run by `make test` before any test:

1. `taf/` is in sync with the notebooks: `nbdev_export` must not change it (never hand-edit taf/*.py).
2. Every notebook is committed clean: no outputs, no execution counts, a kernelspec (papermill needs one).
3. Every experiment notebook has a cell tagged `parameters` (papermill injects profiles there).
4. There is at least one library notebook (a `#| default_exp` cell); otherwise nothing is tested.
"""
import filecmp, json, shutil, subprocess, sys, tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
errors = []

def snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob('*.py')} if d.exists() else {}

before = snapshot(root/'taf')
bin_dir = Path(sys.executable).parent
subprocess.run([str(bin_dir/'nbdev_export')], cwd=root, check=True)
after = snapshot(root/'taf')
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
if changed:
    errors.append("taf/ is out of sync with nbs/: `nbdev_export` changed " + ", ".join(changed)
                  + " (edit the notebook, run `make export`, commit both)")

nbs = sorted(p for p in (root/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
n_lib = 0
for p in nbs:
    rel = p.relative_to(root)
    nb = json.loads(p.read_text())
    if nb.get('metadata', {}).get('kernelspec', {}).get('name') is None:
        errors.append(f"{rel}: no kernelspec in notebook metadata (papermill needs one)")
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        if c.get('outputs') or c.get('execution_count') is not None:
            errors.append(f"{rel}: cell {i} carries outputs/execution_count (run `make clean-nbs`)")
            break
    srcs = [''.join(c['source']) for c in nb['cells']]
    if any(s.lstrip().startswith('#| default_exp') for s in srcs): n_lib += 1
    if 'experiments' in p.parts:
        if not any('parameters' in c.get('metadata', {}).get('tags', []) for c in nb['cells']):
            errors.append(f"{rel}: experiment notebook has no cell tagged `parameters`")
if n_lib == 0: errors.append("no library notebook (`#| default_exp`) found in nbs/")

if errors:
    print("repository checks FAILED:\n  " + "\n  ".join(errors)); sys.exit(1)
print(f"repository checks passed: {len(nbs)} notebooks clean, {n_lib} library notebooks, taf/ in sync")
