"""setuptools glue: metadata lives in pyproject.toml; this file only adds the two extensions.

The extension ``dragon_mp._gobind._gocore`` is not compiled by setuptools: the custom build_ext below runs
pyext/build.py (gopy + go build, see its docstring) and puts the .so plus gopy's Python wrappers into the
``dragon_mp/_gobind`` package directory of the build (or of the source tree for ``pip install -e .``).

The extensions ``dragon_mp._fastpath`` (pyext/fastpath.c: the data plane, every send, recv and lock) and
``dragon_mp._zygote_loop`` (pyext/zygote_loop.c: the zygote's steady-state cycle) are plain C extensions: they
need only a C compiler and the Python headers and link no Go (_fastpath finds the Go functions in the
already-loaded ``_gocore`` at run time). Both are required: if one does not compile, the install fails with
the compiler's output and a line saying which extension failed and what it needs.
"""

import importlib.util
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_gobuild():
    spec = importlib.util.spec_from_file_location("_dragon_mp_gobuild", os.path.join(HERE, "pyext", "build.py"))
    mod = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the Go package dir
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = saved
    return mod


gobuild = _load_gobuild()


class GopyExtension(Extension):
    """An extension built by gopy from a Go package (no C sources for setuptools to compile)."""

    def __init__(self, name):
        super().__init__(name, sources=[])


class build_gopy_ext(build_ext):
    """build_ext that delegates GopyExtension to pyext/build.py and also carries gopy's .py wrappers."""

    def initialize_options(self):
        super().initialize_options()
        self._gopy_extra = {}  # ext name -> generated files other than the .so (paths in build_lib)

    def build_extension(self, ext):
        if not isinstance(ext, GopyExtension):
            try:
                return super().build_extension(ext)
            except (CCompilerError, ExecError, PlatformError) as e:
                raise SystemExit(
                    "dragon_mp: building the C extension %s (%s) failed: %s\n"
                    "It is required. It needs a C compiler (cc/gcc) and the headers of this Python (%s; on "
                    "Debian/Ubuntu the python3-dev package, on Fedora python3-devel)."
                    % (ext.name, ", ".join(ext.sources), e, sysconfig.get_paths()["include"])) from None
        ext_path = os.path.abspath(self.get_ext_fullpath(ext.name))
        try:
            written = gobuild.build(
                target_dir=os.path.dirname(ext_path), so_name=os.path.basename(ext_path), python=sys.executable
            )
        except gobuild.BuildError as e:
            raise SystemExit("dragon_mp: building the Go extension failed: %s" % e) from None
        self._gopy_extra[ext.name] = [str(p) for p in written if os.path.abspath(p) != ext_path]

    def _extra_pairs(self):
        """(file in build_lib, same file in the source tree) for the generated wrappers."""
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            if not isinstance(ext, GopyExtension):
                continue
            inplace_so, regular_so = self._get_inplace_equivalent(build_py, ext)
            for f in self._gopy_extra.get(ext.name, ()):
                yield f, os.path.join(os.path.dirname(inplace_so), os.path.basename(f))

    def copy_extensions_to_source(self):  # --inplace / pip install -e .
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:  # dragon_mp/_gobind does not exist in a clean source tree
            self.mkpath(os.path.dirname(self._get_inplace_equivalent(build_py, ext)[0]))
        super().copy_extensions_to_source()
        for src, dst in self._extra_pairs():
            self.copy_file(src, dst, level=self.verbose)

    def get_outputs(self):
        outs = super().get_outputs()
        if not self.inplace:
            outs = sorted(set(outs) | {f for fs in self._gopy_extra.values() for f in fs})
        return outs

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping.update(dict(self._extra_pairs()))
        return mapping


class build_ext_capi(build_gopy_ext):
    """build_gopy_ext that also builds the C API (capi/, docs/c_api.md): the Go core as a C shared library,
    dragon_mp/lib/libdragon_mp.so, with its headers (include/) copied to dragon_mp/include/. Python never
    loads it; C and C++ programs link it (``python -m dragon_mp.capi --cflags --libs``)."""

    def run(self):
        super().run()
        import shutil
        import subprocess
        import tempfile

        pkg = os.path.join(HERE if self.inplace else self.build_lib, "dragon_mp")
        self._capi_outputs = []
        env = dict(os.environ, CGO_ENABLED="1")
        if "-buildvcs" not in env.get("GOFLAGS", ""):
            env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
        with tempfile.TemporaryDirectory() as tmp:  # go also writes a header of its own there: not shipped
            so = os.path.join(tmp, "libdragon_mp.so")
            try:
                subprocess.run([gobuild._find_go(), "build", "-buildmode=c-shared", "-o", so, "./capi"],
                               cwd=HERE, env=env, check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                raise SystemExit("dragon_mp: building the C API library (capi/) failed: %s" % e) from None
            for src, sub in [(so, "lib")] + [(os.path.join(HERE, "include", h), "include")
                                             for h in ("dragon_mp.h", "dragon_mp.hpp")]:
                dst = os.path.join(pkg, sub, os.path.basename(src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)
                self._capi_outputs.append(dst)

    def get_outputs(self):
        outs = super().get_outputs()
        if not self.inplace:  # in place (pip install -e .) they are written into the source tree itself
            outs = outs + list(getattr(self, "_capi_outputs", ()))
        return outs


def _fastpath_extension():
    # Link libdl/libpthread where this Python needed them itself (glibc < 2.34); newer libcs hold both.
    libs = (sysconfig.get_config_var("LIBS") or "").split()
    return Extension(
        "dragon_mp._fastpath",
        sources=list(gobuild.FASTPATH_SOURCES),
        depends=list(gobuild.FASTPATH_INCLUDES),
        libraries=[name for name in ("dl", "pthread") if "-l" + name in libs],
    )


def _zygote_loop_extension():
    return Extension("dragon_mp._zygote_loop", sources=list(gobuild.ZYGOTE_LOOP_SOURCES))


def _readme():
    path = os.path.join(HERE, "README.md")
    if not os.path.exists(path):  # pyproject declares readme dynamic, so something must be given
        return {"long_description": "dragon_mp", "long_description_content_type": "text/plain"}
    with open(path, encoding="utf-8") as f:
        return {"long_description": f.read(), "long_description_content_type": "text/markdown"}


setup(
    **_readme(),
    ext_modules=[GopyExtension("dragon_mp._gobind." + gobuild.EXT_MODULE), _fastpath_extension(),
                 _zygote_loop_extension()],
    cmdclass={"build_ext": build_ext_capi},
)
