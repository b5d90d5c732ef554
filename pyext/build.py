"""Build glue: bind the Go package ./pyext with gopy into ONE extension inside dragon_mp.

Used by setup.py (the custom build_ext) and runnable by hand:

    python pyext/build.py [--out DIR]      # default DIR: dragon_mp/_gobind (in the source tree)

Result, in the target directory (the Python subpackage ``dragon_mp._gobind``):

    __init__.py                 written here; importing it does NOT load Go
    _gocore<EXT_SUFFIX>         the one shared library: Go runtime + gopy's C wrappers + //export functions
    pyext.py                    gopy's Python wrapper, named after the Go package (``package pyext``)
    go.py                       gopy's helper module (GoClass, Slice_*/Map_* types of the Go builtins)

The generated wrappers use relative imports (``from . import _gocore``), so they work inside any package.
gopy's extension module is named ``_<name>`` for ``-name=<name>``; we pass ``-name=gocore`` -> ``_gocore``.
Do NOT pass a name starting with "_": gopy writes the cgo code to ``<name>.go`` and the go tool ignores files
whose name starts with "_", so ``-name=_gocore`` fails to build (checked); and the extension would be
``__gocore``, which Python name-mangles inside the generated class bodies (``__gocore.IncRef`` in class ``Foo``
means ``_Foo__gocore``).

How the build runs (the team's bridge note, re-checked on Go 1.26.8 / gopy v0.4.10 / CPython 3.11):
  * gopy and goimports are pinned as Go tools in go.mod; they are built into build/gotools/ and put first on
    PATH, because gopy execs ``goimports`` and ``go`` by name.
  * gopy writes a cgo ``package main`` that imports github.com/dragon-mp/dragon_mp/pyext and then runs
    ``go build -mod=mod`` inside its output directory. We use build/_gopy/out, with its own go.mod (below):
    a nested module and a path element starting with "_" are both ignored by ``./...``, so ``go test ./...``
    and ``go vet ./...`` never see the generated code.
  * ``-mod=mod`` is hard-coded in gopy's final ``go build`` and rewrote the source tree's go.mod when the
    output directory belonged to this module (it turned github.com/go-python/gopy from "// indirect" into a
    direct requirement, because the generated main package imports gopy/gopyh). So the output directory gets
    its OWN throwaway go.mod (module dragon_mp_gopy_build, require + replace github.com/dragon-mp/dragon_mp =>
    this checkout, go.sum copied): the build never modifies the source tree. (GOFLAGS=-modfile=... does not
    work: x/tools/go/packages runs ``go version`` with GO111MODULE=off, which rejects -modfile.) gopy loads
    ./pyext in THIS module with the default -mod=readonly, so a go.mod that lacks a needed requirement
    fails the build as ``go build`` would: run ``go mod tidy``.
  * ``-dynamic-link=true``: the .so has no DT_NEEDED on libpython (it resolves Python symbols from the
    interpreter that loads it). Checked with ``readelf -d``.
  * The -vm Python must be able to ``import pybindgen`` (PyPI "pybindgen"; PyPI "gopy" is unrelated) and must
    be the interpreter the extension is for (its headers and EXT_SUFFIX are used). Under pip's build isolation
    sys.executable is the target interpreter and pip's PYTHONPATH makes the isolated pybindgen importable by
    the child processes gopy starts.

pyext/fastpath.c (FASTPATH_SOURCES) is NOT part of the Go package, though it lives in its directory: it is the
C source of the CPython extension dragon_mp._fastpath, compiled by setup.py. cgo compiles every .c file of a
package that imports "C" into that package (checked: ``go list -f '{{.CFiles}}' ./pyext`` listed fastpath.c),
so such a file must start with a ``//go:build ignore`` line (Go build constraints apply to C files too; it is
a C99 comment for the C compiler). build() refuses to run without it.

os.chdir finding (gopy v0.4.10, bind/gen.go python preamble). Every generated wrapper module (pyext.py, go.py)
starts with:

        cwd = os.getcwd()
        currentdir = os.path.dirname(os.path.abspath(inspect.getfile(inspect.currentframe())))
        os.chdir(currentdir)
        from . import _gocore
        from . import go
        os.chdir(cwd)

It exists so that a two-library build (extension + separate ``<name>_go.so`` found by a relative path) could
be dlopened. Our build is a single .so loaded by absolute path, so the chdir is useless, and harmful:
  1. it is not in try/finally: if the import fails (e.g. the .so cannot be loaded), the process cwd stays
     changed to the package directory for good (reproduced);
  2. it changes the PROCESS-wide cwd, so other threads see the package directory as their cwd while the
     import runs (reproduced with a thread polling os.getcwd());
  3. os.getcwd() raises FileNotFoundError when the cwd has been deleted, so the import itself fails
     (reproduced).
We therefore delete those four lines (keeping the imports) in every generated .py, and fail the build if the
preamble is not found in the expected shape while some os.chdir remains (i.e. a gopy upgrade changed it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the Go module root == the Python project root
GO_PACKAGE = "./pyext"  # the facade gopy binds (whatever it contains)
GOPY_NAME = "gocore"  # -> extension module "_gocore" (see the docstring: must not start with "_")
EXT_MODULE = "_" + GOPY_NAME
DEFAULT_TARGET = ROOT / "dragon_mp" / "_gobind"
TOOLS = ("github.com/go-python/gopy", "golang.org/x/tools/cmd/goimports")
# C sources of the CPython extension dragon_mp._fastpath (built by setup.py), relative to ROOT; they sit in
# the Go package's directory and must be hidden from cgo (see the docstring).
FASTPATH_SOURCES = ("pyext/fastpath.c",)
# Files fastpath.c #includes (compiled with it; the .c ones hidden from cgo likewise). layout.h is generated
# from the Go structs (go run ./pyext/internal/layoutgen); a header is never compiled by cgo on its own.
FASTPATH_INCLUDES = (
    "pyext/layout.h",
    "pyext/fastpath_chan.c",
    "pyext/fastpath_pickle.c",
    "pyext/fastpath_objects.c",
    "pyext/fastpath_alloc.c",
    "pyext/fastpath_queue.c",
    "pyext/fastpath_sync.c",
    "pyext/fastpath_bind.c",
)
# C sources of dragon_mp._zygote_loop (the zygote's steady-state cycle); hidden from cgo likewise.
ZYGOTE_LOOP_SOURCES = ("pyext/zygote_loop.c",)
_GO_IGNORE_RE = re.compile(r"\A(?:[ \t]*(?://[^\n]*)?\n)*?//go:build ignore[ \t]*\n")

INIT_TEMPLATE = '''\
"""gopy bindings of the Go package {go_package}, GENERATED at build time by pyext/build.py. Do not edit.

Importing this package does NOT load Go. Load it (once per process, from the main thread) with

    module, so_path = dragon_mp._gobind.load()   # module: gopy's wrapper of {go_package} (control plane)
    lib = ctypes.CDLL(so_path)                   # the //export C functions of the SAME library (data plane)

(equivalently: ``from dragon_mp._gobind import {wrapper}`` and ``library_path()``).
Always dlopen library_path(): a copy of the .so at another path would start a second Go runtime.
"""

import importlib as _il
import importlib.util as _ilu
import sys as _sys

EXTENSION = __name__ + ".{ext_module}"  # the extension module (the .so)
WRAPPER = __name__ + ".{wrapper}"  # gopy's Python wrapper of the Go package


def library_path():
    """Absolute path of the extension .so, found the way ``import`` finds it, without loading it."""
    spec = _ilu.find_spec(EXTENSION)
    if spec is None or not spec.origin:
        raise ImportError("dragon_mp: the Go extension %s is not built; reinstall dragon_mp" % EXTENSION)
    return spec.origin


def load():
    """Import gopy's wrapper module (this loads the Go library and starts its runtime).

    Returns (wrapper module, absolute path of the loaded .so) -- pass the path to ctypes.CDLL.
    """
    module = _il.import_module(WRAPPER)
    return module, _sys.modules[EXTENSION].__file__
'''

# The chdir preamble of gopy v0.4.10 wrappers (see the module docstring).
_CHDIR_RE = re.compile(
    r"^cwd = os\.getcwd\(\)\n"
    r"currentdir = os\.path\.dirname\(os\.path\.abspath\(inspect\.getfile\(inspect\.currentframe\(\)\)\)\)\n"
    r"os\.chdir\(currentdir\)\n"
    r"(?P<imports>(?:from \. import \w+\n)+)"
    r"\s*os\.chdir\(cwd\)\n",
    re.M,
)


class BuildError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print("[dragon_mp build] " + msg, file=sys.stderr, flush=True)


def _run(cmd, env, cwd=ROOT, verbose=False):
    if verbose:
        _log("$ " + " ".join(str(c) for c in cmd))
    p = subprocess.run(
        [str(c) for c in cmd], cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if verbose and p.stdout:
        sys.stderr.write(p.stdout)
    if p.returncode != 0:
        if not verbose:
            sys.stderr.write(p.stdout)
        raise BuildError("command failed (exit %d): %s" % (p.returncode, " ".join(str(c) for c in cmd)))
    return p.stdout


def _find_go() -> str:
    go = os.environ.get("GO") or shutil.which("go")
    if not go:
        for cand in ("/usr/local/go/bin/go", os.path.expanduser("~/go/bin/go"), "/usr/lib/go/bin/go"):
            if os.access(cand, os.X_OK):
                go = cand
                break
    if not go:
        raise BuildError("the Go toolchain ('go') is not on PATH; install Go >= 1.26 (https://go.dev/dl/)")
    return go


def _check_prereqs(python: str, env: dict) -> None:
    cc = env.get("CC", "gcc").split()[0]
    if not shutil.which(cc, path=env.get("PATH")):
        raise BuildError("no C compiler (%r) on PATH: cgo needs one (Debian: apt-get install gcc)" % cc)
    probe = (
        "import sysconfig, os, sys\n"
        "inc = sysconfig.get_paths()['include']\n"
        "print(os.path.exists(os.path.join(inc, 'Python.h')))\n"
        "try:\n    import pybindgen\n    print(True)\nexcept ImportError:\n    print(False)\n"
    )
    out = _run([python, "-c", probe], env).split()
    if out[0] != "True":
        raise BuildError("Python headers (Python.h) missing for %s (Debian system python: python3-dev)" % python)
    if out[1] != "True":
        raise BuildError(
            "%s cannot import pybindgen: pip install pybindgen (the PyPI package 'gopy' is unrelated)" % python
        )


def _check_fastpath_sources() -> None:
    """Each C extension source (FASTPATH_SOURCES, the .c files of FASTPATH_INCLUDES, ZYGOTE_LOOP_SOURCES) must
    start with //go:build ignore, or cgo links it into the Go library; and every pyext/fastpath*.c must be
    listed, or setup.py would not rebuild the extension when it changes."""
    listed = set(FASTPATH_SOURCES + FASTPATH_INCLUDES)
    for path in sorted((ROOT / "pyext").glob("fastpath*.c")):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in listed:
            raise BuildError("%s is not in pyext/build.py's FASTPATH_SOURCES or FASTPATH_INCLUDES" % rel)
    for rel in FASTPATH_SOURCES + FASTPATH_INCLUDES + ZYGOTE_LOOP_SOURCES:
        if not rel.endswith(".c"):
            continue
        path = ROOT / rel
        if path.exists() and not _GO_IGNORE_RE.match(path.read_text()):
            raise BuildError(
                "%s must start with a '//go:build ignore' line: it is a CPython extension source in the "
                "Go package's directory, and cgo would compile it into the gopy library" % rel
            )


def _patch_chdir(path: Path) -> None:
    text = path.read_text()
    new, n = _CHDIR_RE.subn(
        lambda m: "# (pyext/build.py removed gopy's chdir around these imports: one .so, loaded by absolute path)\n"
        + m.group("imports"),
        text,
    )
    if n > 1 or "os.chdir" in new:
        raise BuildError(
            "%s: gopy's os.chdir preamble has an unexpected shape; update _CHDIR_RE in pyext/build.py" % path
        )
    if n:
        path.write_text(new)


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(target_dir=DEFAULT_TARGET, so_name=None, python=None, verbose=None) -> list:
    """Run gopy on GO_PACKAGE and put the result into target_dir (a package directory).

    so_name: file name for the extension (default: EXT_MODULE + the EXT_SUFFIX of `python`).
    Returns the list of files written into target_dir.
    """
    python = python or sys.executable
    if verbose is None:
        verbose = bool(os.environ.get("DRAGON_MP_BUILD_VERBOSE"))
    target_dir = Path(target_dir).resolve()
    build_dir = ROOT / "build"
    gotools = build_dir / "gotools"
    gopy_root = build_dir / "_gopy"  # "_" hides it (and everything below) from ./... patterns
    out = gopy_root / "out"

    go = _find_go()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(gotools), str(Path(go).parent), env.get("PATH", "")])
    env["CGO_ENABLED"] = "1"
    if "-buildvcs" not in env.get("GOFLAGS", ""):  # VCS stamping of the throwaway main package is useless
        env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    if not env.get("GOCACHE") and not env.get("HOME") and not env.get("XDG_CACHE_HOME"):
        env["GOCACHE"] = str(build_dir / "gocache")
    _check_prereqs(python, env)
    _check_fastpath_sources()

    with _lock(gopy_root / ".lock"):
        root_mod = json.loads(_run([go, "mod", "edit", "-json", ROOT / "go.mod"], env))
        module_path = root_mod["Module"]["Path"]
        _run([go, "build", "-o", str(gotools) + os.sep, *TOOLS], env, verbose=verbose)

        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        # The throwaway module gopy's `go build -mod=mod` may edit instead of ours (see the docstring).
        gomod = "module dragon_mp_gopy_build\n\ngo %s\n" % root_mod["Go"]
        if root_mod.get("Toolchain"):
            gomod += "\ntoolchain %s\n" % root_mod["Toolchain"]["Name"]
        gomod += "\nrequire %s v0.0.0-00010101000000-000000000000\n\nreplace %s => %s\n" % (
            module_path, module_path, json.dumps(str(ROOT)))
        (out / "go.mod").write_text(gomod)
        if (ROOT / "go.sum").exists():
            shutil.copyfile(ROOT / "go.sum", out / "go.sum")
        _run(
            [
                gotools / "gopy",
                "build",
                "-vm=" + python,
                "-output=" + str(out),
                "-name=" + GOPY_NAME,
                "-no-make=true",
                "-dynamic-link=true",
                "-symbols=false",
                GO_PACKAGE,
            ],
            env,
            verbose=verbose,
        )

        sos = sorted(out.glob(EXT_MODULE + ".*so"))
        if len(sos) != 1:
            raise BuildError("expected one %s*.so in %s, found %s" % (EXT_MODULE, out, [p.name for p in sos]))
        wrappers = sorted(p for p in out.glob("*.py") if p.name not in ("build.py", "__init__.py"))
        if not any(p.name == "go.py" for p in wrappers) or len(wrappers) < 2:
            raise BuildError("gopy did not generate the expected wrappers in %s: %s" % (out, wrappers))
        for p in wrappers:
            _patch_chdir(p)
        wrapper = next(p.stem for p in wrappers if p.name != "go.py")

        if so_name is None:
            ext_suffix = subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                env=env, stdout=subprocess.PIPE, text=True, check=True,
            ).stdout.strip()
            so_name = EXT_MODULE + ext_suffix

        target_dir.mkdir(parents=True, exist_ok=True)
        # Remove stale outputs of an earlier build (another interpreter's .so, a renamed Go package's wrapper).
        for old in target_dir.iterdir():
            if old.is_file() and (old.suffix in (".py", ".so") or old.name.startswith(EXT_MODULE + ".")):
                old.unlink()
        written = []
        dst = target_dir / so_name
        shutil.copyfile(sos[0], dst)
        os.chmod(dst, 0o755)
        written.append(dst)
        for p in wrappers:
            shutil.copyfile(p, target_dir / p.name)
            written.append(target_dir / p.name)
        init = target_dir / "__init__.py"
        init.write_text(
            INIT_TEMPLATE.format(go_package=GO_PACKAGE, wrapper=wrapper, ext_module=EXT_MODULE)
        )
        written.append(init)
    _log("built %s (+ %s) into %s" % (so_name, ", ".join(p.name for p in wrappers), target_dir))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_TARGET), help="target package directory (default: %(default)s)")
    ap.add_argument("--python", default=sys.executable, help="target interpreter (needs pybindgen)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    try:
        build(a.out, python=a.python, verbose=a.verbose)
    except BuildError as e:
        _log("ERROR: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
