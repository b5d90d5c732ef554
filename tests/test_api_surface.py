"""dragon_mp has the API of CPython's multiprocessing, name for name.

`import dragon_mp as multiprocessing` must not break code that uses any
name of the package, of its submodules (public or private: code and CPython's
own tests reach for `process._children`, `util.abstract_sockets_supported`)
or of a context object. These tests check names and which object a name is;
the behaviour tests live elsewhere.
"""

import importlib
import pkgutil
import types

import multiprocessing

import pytest

import dragon_mp


def _stdlib_submodules():
    """Every submodule of this Python's multiprocessing that imports here
    (popen_spawn_win32 needs Windows)."""
    names = []
    for info in pkgutil.iter_modules(multiprocessing.__path__):
        try:
            importlib.import_module('multiprocessing.' + info.name)
        except ImportError:
            continue
        names.append(info.name)
    return sorted(names + ['dummy.connection'])


SUBMODULES = _stdlib_submodules()


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


@pytest.mark.parametrize('module', [''] + SUBMODULES)
def test_submodule_has_every_name(module):
    # dir() of each pair: dragon_mp's module has every name stdlib's has.
    ours = importlib.import_module('dragon_mp.' + module if module else 'dragon_mp')
    theirs = importlib.import_module('multiprocessing.' + module if module else 'multiprocessing')
    missing = sorted(set(dir(theirs)) - set(dir(ours)))
    assert missing == [], f'dragon_mp.{module} lacks {missing}'


@pytest.mark.parametrize('module', SUBMODULES)
def test_star_import(module):
    # `from dragon_mp.X import *` gives every name of stdlib's __all__.
    theirs = importlib.import_module('multiprocessing.' + module)
    ns = {}
    exec(f'from dragon_mp.{module} import *', ns)
    assert sorted(set(getattr(theirs, '__all__', ())) - set(ns)) == []


def test_reused_machinery_is_stdlibs_own_object():
    # Where dragon_mp uses stdlib's bookkeeping, the name is that very object,
    # not a copy that would drift from it.
    import multiprocessing.process
    import multiprocessing.resource_tracker
    import multiprocessing.util
    from dragon_mp import process, resource_tracker, util
    assert process._children is multiprocessing.process._children
    assert process._cleanup is multiprocessing.process._cleanup
    assert util._finalizer_registry is multiprocessing.util._finalizer_registry
    assert util.abstract_sockets_supported == multiprocessing.util.abstract_sockets_supported
    assert resource_tracker._resource_tracker is multiprocessing.resource_tracker._resource_tracker


def test_sibling_references_are_dragon_mps():
    # stdlib's queues module names its connection module, pool its wait and
    # get_context: dragon_mp's name dragon_mp's.
    from dragon_mp import connection, context, managers, pool, queues, spawn
    assert queues.connection is connection
    assert queues.context is context
    assert managers.pool is pool
    assert pool.wait is connection.wait
    assert pool.get_context() is dragon_mp.get_context()
    assert spawn.get_start_method() == dragon_mp.get_start_method()
    assert context._concrete_contexts['fork'] is dragon_mp.get_context('fork')


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


def test_objects_are_instances_of_stdlibs_classes():
    # Libraries check types (dask: isinstance(pool, multiprocessing.pool.Pool)).
    import multiprocessing.connection
    import multiprocessing.pool
    import multiprocessing.queues
    import gc
    checks = [
        (dragon_mp.Queue(), multiprocessing.queues.Queue),
        (dragon_mp.SimpleQueue(), multiprocessing.queues.SimpleQueue),
        (dragon_mp.JoinableQueue(), multiprocessing.queues.JoinableQueue),
        (dragon_mp.Process(), multiprocessing.Process),
        (dragon_mp.get_context('fork').Process(), multiprocessing.process.BaseProcess),
        (dragon_mp.Pipe()[0], multiprocessing.connection.Connection),
    ]
    for obj, cls in checks:
        assert isinstance(obj, cls), (obj, cls)
    with dragon_mp.Pool(1) as pool:
        assert isinstance(pool, multiprocessing.pool.Pool)
        assert pool.apply(abs, (-3,)) == 3
    with dragon_mp.pool.ThreadPool(1) as tp:
        assert isinstance(tp, multiprocessing.pool.ThreadPool)
    del checks
    gc.collect()
