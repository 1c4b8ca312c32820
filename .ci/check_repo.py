"""Repository checks run by `make test` before any test:

1. `taf/` is in sync with the notebooks: `nbdev_export` must not change it (never hand-edit taf/*.py).
2. Every notebook is committed clean: no outputs, no execution counts, a kernelspec (papermill needs one).
3. Every experiment notebook has a cell tagged `parameters` (papermill injects profiles there).
4. There is at least one library notebook (a `#| default_exp` cell); otherwise nothing is tested.
5. Library notebooks read in dependency order: `NN_name.ipynb` imports only taf modules of lower numbers.
6. Code cells of library notebooks: no `;`-chained statements, no line longer than 120 characters.
"""
import io, json, re, subprocess, sys, tokenize
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

MAX_LINE = 120
lib = {}                                                     # module -> (number, notebook)
for p in sorted((root/'nbs').glob('[0-9][0-9]_*.ipynb')):
    cells = json.loads(p.read_text())['cells']
    exp = [m.group(1) for c in cells for m in [re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))] if m]
    if exp: lib[exp[0]] = (int(p.name[:2]), p)
for mod, (num, p) in lib.items():
    rel = p.relative_to(root)
    for i, c in enumerate(json.loads(p.read_text())['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        for dep in re.findall(r'^\s*(?:from|import)\s+taf\.(\w+)', src, flags=re.M):
            if dep in lib and lib[dep][0] >= num and dep != mod:
                errors.append(f"{rel}: cell {i} imports taf.{dep} from a later notebook ({lib[dep][1].name})")
        for j, line in enumerate(src.split('\n')):
            if len(line) > MAX_LINE: errors.append(f"{rel}: cell {i} line {j + 1} has {len(line)} > {MAX_LINE} characters")
        code = '\n'.join(l for l in src.split('\n') if not l.lstrip().startswith(('%', '!')))
        try: toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
        except (tokenize.TokenError, SyntaxError) as e: errors.append(f"{rel}: cell {i} does not tokenize: {e}"); continue
        for t in toks:
            if t.type == tokenize.OP and t.string == ';':
                errors.append(f"{rel}: cell {i} line {t.start[0]}: `;`-chained statements ({t.line.strip()[:60]})")

if errors:
    print("repository checks FAILED:\n  " + "\n  ".join(errors)); sys.exit(1)
print(f"repository checks passed: {len(nbs)} notebooks clean, {n_lib} library notebooks, taf/ in sync")
