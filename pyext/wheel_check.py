"""Check what `make wheel` promises: each wheel in dist/ installs with pip
alone and runs the demo, on a machine without Go or a C compiler.

    python pyext/wheel_check.py PYTHON [PYTHON ...]

For each interpreter: a fresh venv, a PATH that holds only the venv's bin
(checked to find no go, gcc or cc), `pip install --no-index` of the dist/
wheel of that interpreter's tag, then examples/demo.py run as `python
demo.py` and as `dragon demo.py` from a directory outside the source tree.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = ['[0, 1, 4, 9, 16, 25, 36, 49]',
            'exit codes: [0, 0, 0, 0, 0, 0, 0, 0]',
            '[5, 4, 3, 2, 1, 0, 1, 2, 3, 4]']


def check(python):
    tag = subprocess.check_output(
        [python, '-c', 'import sys; print("cp%d%d" % sys.version_info[:2])'], text=True).strip()
    wheels = sorted(glob.glob(os.path.join(ROOT, 'dist', f'dragon_mp-*-{tag}-{tag}-manylinux*.whl')))
    if not wheels:
        return f'{python}: no {tag} manylinux wheel in dist/ (make wheel)'
    with tempfile.TemporaryDirectory(prefix='dmp-wheel-') as tmp:
        venv, run = os.path.join(tmp, 'venv'), os.path.join(tmp, 'run')
        subprocess.check_call([python, '-m', 'venv', venv])
        bindir = os.path.join(venv, 'bin')
        found = [t for t in ('go', 'gcc', 'cc') if shutil.which(t, path=bindir)]
        if found:
            return f'{python}: the clean PATH finds {found}'
        env = {'PATH': bindir, 'HOME': tmp, 'LANG': 'C.UTF-8'}
        subprocess.check_call([os.path.join(bindir, 'python'), '-m', 'pip', 'install', '-q',
                               '--no-index', wheels[-1]], env=env)
        os.mkdir(run)
        shutil.copy(os.path.join(ROOT, 'examples', 'demo.py'), run)
        for argv in (['python', 'demo.py'], ['dragon', 'demo.py']):
            r = subprocess.run([os.path.join(bindir, argv[0])] + argv[1:], cwd=run, env=env,
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0 or r.stdout.splitlines()[:3] != EXPECTED:
                return f'{python}: {" ".join(argv)} -> {r.returncode}\n{r.stdout}{r.stderr[-2000:]}'
        print(f'{os.path.basename(wheels[-1])}: installs without Go or a C compiler, '
              f'python demo.py and dragon demo.py run')
    return None


def main(pythons):
    if not pythons:
        sys.exit(__doc__)
    errors = [e for e in map(check, pythons) if e]
    if errors:
        sys.exit('\n'.join(errors))


if __name__ == '__main__':
    main(sys.argv[1:])
