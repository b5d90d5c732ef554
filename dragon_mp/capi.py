"""Where the C API of dragon_mp is, for building C and C++ programs against it.

The C API (include/dragon_mp.h, include/dragon_mp.hpp; docs/c_api.md) is the Go core built as a C shared
library, libdragon_mp.so, which the build puts into this package (dragon_mp/lib/, headers in
dragon_mp/include/). Python never loads it. From a shell:

    cc prog.c $(python -m dragon_mp.capi --cflags --libs) -o prog

--libs gives -L, -l and an rpath, so the program finds the library without LD_LIBRARY_PATH.
"""

import os
import sys

__all__ = ['include_dir', 'library_dir', 'cflags', 'libs']

_HERE = os.path.dirname(os.path.abspath(__file__))


def include_dir():
    """The directory holding dragon_mp.h and dragon_mp.hpp."""
    return os.path.join(_HERE, 'include')


def library_dir():
    """The directory holding libdragon_mp.so."""
    return os.path.join(_HERE, 'lib')


def cflags():
    return ['-I' + include_dir()]


def libs():
    d = library_dir()
    return ['-L' + d, '-Wl,-rpath,' + d, '-ldragon_mp']


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or set(argv) - {'--cflags', '--libs'}:
        print('usage: python -m dragon_mp.capi [--cflags] [--libs]', file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(library_dir(), 'libdragon_mp.so')):
        print('dragon_mp.capi: %s has no libdragon_mp.so: this dragon_mp was built without its C API'
              % library_dir(), file=sys.stderr)
        return 1
    flags = []
    for opt in argv:
        flags += cflags() if opt == '--cflags' else libs()
    print(' '.join(flags))
    return 0


if __name__ == '__main__':
    sys.exit(main())
