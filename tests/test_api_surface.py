"""dragon_mp has the public API of CPython's multiprocessing, name for name.

`import dragon_mp as multiprocessing` must not break code that uses any
public name of the package, of its submodules or of a context object.
These tests only check that names exist; the behaviour tests live elsewhere.
"""

import importlib
import types

import multiprocessing

import pytest

import dragon_mp

SUBMODULES = ['connection', 'context', 'dummy', 'dummy.connection', 'managers', 'pool',
              'process', 'queues', 'reduction', 'sharedctypes', 'shared_memory',
              'synchronize', 'util', 'heap']


def public_names(module):
    """The stdlib module's __all__, or its public non-module names when __all__ is empty."""
    names = list(getattr(module, '__all__', ()) or ())
    if not names:
        names = [n for n, v in vars(module).items()
                 if not n.startswith('_') and not isinstance(v, types.ModuleType)]
    return sorted(names)


@pytest.mark.parametrize('name', sorted(multiprocessing.__all__))
def test_package_name(name):
    assert hasattr(dragon_mp, name)


def test_package_all_matches():
    # Everything stdlib's package exports is in dragon_mp's __all__ as well,
    # so that `from dragon_mp import *` gives the same names.
    assert sorted(set(multiprocessing.__all__) - set(dragon_mp.__all__)) == []


@pytest.mark.parametrize('module', SUBMODULES)
def test_submodule(module):
    ours = importlib.import_module('dragon_mp.' + module)
    theirs = importlib.import_module('multiprocessing.' + module)
    missing = [n for n in public_names(theirs) if not hasattr(ours, n)]
    assert missing == [], f'dragon_mp.{module} lacks {missing}'


@pytest.mark.parametrize('module', SUBMODULES)
def test_submodule_is_an_attribute_after_import(module):
    # `import dragon_mp.X` then `dragon_mp.X.name`, as with multiprocessing.
    importlib.import_module('dragon_mp.' + module)
    obj = dragon_mp
    for part in module.split('.'):
        obj = getattr(obj, part)
    assert isinstance(obj, types.ModuleType) and obj.__name__ == 'dragon_mp.' + module


def test_context_methods():
    theirs = multiprocessing.get_context()
    ours = dragon_mp.get_context()
    missing = [n for n in dir(theirs) if not n.startswith('_') and not hasattr(ours, n)]
    assert missing == []
    # Every context, whatever the method asked for, has them too.
    for method in dragon_mp.get_all_start_methods():
        ctx = dragon_mp.get_context(method)
        assert [n for n in dir(theirs) if not n.startswith('_') and not hasattr(ctx, n)] == []


def test_context_methods_are_callable_like_stdlib():
    theirs = multiprocessing.get_context()
    ours = dragon_mp.get_context()
    for name in dir(theirs):
        if name.startswith('_') or not callable(getattr(theirs, name)):
            continue
        assert callable(getattr(ours, name)), name


def test_exceptions_are_stdlib_classes():
    # Code catching multiprocessing's exceptions must catch dragon_mp's.
    for name in ('ProcessError', 'BufferTooShort', 'TimeoutError', 'AuthenticationError'):
        assert getattr(dragon_mp, name) is getattr(multiprocessing, name), name


def _double(x):
    return 2 * x


def test_dummy_is_stdlibs_thread_api():
    import multiprocessing.dummy
    import threading
    from dragon_mp import dummy
    from dragon_mp.dummy import connection
    assert dummy.__all__ == multiprocessing.dummy.__all__
    assert dummy.Process is multiprocessing.dummy.Process
    assert dummy.connection is connection
    seen = []
    t = dummy.Process(target=lambda: seen.append(threading.current_thread().name))
    t.start()
    t.join()
    assert seen == [t.name] and dummy.current_process() is threading.current_thread()
    with dummy.Pool(2) as pool:
        assert pool.map(_double, range(5)) == [0, 2, 4, 6, 8]
    a, b = connection.Pipe()
    a.send('ping')
    assert b.recv() == 'ping'
    with connection.Listener() as listener:
        client = connection.Client(listener.address)
        server = listener.accept()
        client.send([1, 2])
        assert server.recv() == [1, 2]
