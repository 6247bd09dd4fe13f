"""The async twin of a user's wrapper, made from its class's source when an
``AsyncStorage`` is built, by the rules that generate the library's own twins
(``pystorage.aio.rules``), and kept on the class for the next stack.

The twin ``AsyncX`` subclasses ``X`` and the twin of ``X``'s base, and overrides only
``X``'s own methods that do I/O, each compiled from ``X``'s source with the calls of the
layer below awaited. It keeps the original method's globals, closure (``super()``
included: it finds the base's twin next), defaults and annotations: one source, no copy
to keep in step. Where the rules do not cover a method, ``ConfigurationError`` names it,
says why, and how to write its twin by hand.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping
from typing import Any

from pystorage.aio.rules import (
    ASYNC_ITERATIONS,
    ASYNC_RESULTS,
    ASYNC_SECTIONS,
    INNER,
    OPERATIONS,
    SYNC_ONLY,
    call_of,
    does_io,
    translated,
)
from pystorage.errors import ConfigurationError
from pystorage.layers.base import Wrapper

_KEPT = "_pystorage_async_twin"  # the attribute of a class that holds its twin


def twin_class(cls: type[Wrapper], known: Mapping[type, type]) -> type[Wrapper]:
    """The async twin of the wrapper class ``cls`` (``known``: the library's own)."""
    if cls in known:
        return known[cls]
    made = vars(cls).get(_KEPT)
    if made is None:
        # No lock: two threads building the first stacks at once make equal twins, and
        # either one serves (a lock would need renewing after fork, for a rare race).
        made = _made(cls, known)
        type.__setattr__(cls, _KEPT, made)  # on the class: collected with it
    return made


def _made(cls: type[Wrapper], known: Mapping[type, type]) -> type[Wrapper]:
    bases = [base for base in cls.__bases__ if issubclass(base, Wrapper)]
    if len(bases) != 1:
        raise _refused(cls, "__bases__", "it has several wrapper bases", hand=True)
    if "__init__" in vars(cls) and "__attrs_attrs__" not in vars(cls):
        raise _refused(
            cls,
            "__init__",
            "it is not an attrs class (AsyncStorage makes the twin from its "
            "fields): decorate it with @attrs.define(eq=False)",
            hand=False,
        )
    base_twin = twin_class(bases[0], known)
    own = {name: value for name, value in vars(cls).items() if type(value) is types.FunctionType}
    async_names = set(OPERATIONS) | {
        name
        for name in dir(base_twin)
        if inspect.iscoroutinefunction(getattr(base_twin, name, None))
        or inspect.isasyncgenfunction(getattr(base_twin, name, None))
    }
    # The assembly (link) and the dunders (attrs's __init__, ...) stay sync: I/O there
    # would go unawaited.
    stays_sync = {name for name in own if name in SYNC_ONLY or name[:2] == name[-2:] == "__"}
    for name in stays_sync:
        readable = _readable(own[name])
        if readable is not None and does_io(readable, async_names):
            raise _refused(
                cls,
                name,
                "it does I/O, and it runs sync, when the stack is built; read from below "
                "in prepare(), which the async stack awaits",
                hand=False,
            )
    trees = {
        name: _tree(cls, name, function) for name, function in own.items() if name not in stays_sync
    }
    for name, tree in trees.items():
        _check(cls, name, tree, async_names)
    grown = True
    while grown:  # a helper that does I/O becomes async, and so do its callers
        grown = False
        for name, tree in trees.items():
            if name not in async_names and translated(tree, async_names) is not None:
                async_names.add(name)
                grown = True
    methods: dict[str, Any] = {}
    for name, tree in trees.items():
        twin = translated(tree, async_names)
        if twin is not None:
            methods[name] = _compiled(cls, own[name], twin)
    return types.new_class(
        f"Async{cls.__name__}",
        (cls, base_twin),
        exec_body=lambda namespace: namespace.update(
            methods,
            __slots__=(),
            __module__=cls.__module__,
            __qualname__=f"Async{cls.__qualname__}",
            __doc__=f"The async twin of ``{cls.__qualname__}``, made from its source.",
        ),
    )


def _tree(cls: type, name: str, function: types.FunctionType) -> ast.FunctionDef:
    """The syntax tree of one method, at the lines of its file."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as error:
        raise _refused(cls, name, f"its source cannot be read ({error})", hand=True) from None
    (tree,) = ast.parse(source).body
    if not isinstance(tree, ast.FunctionDef):
        raise _refused(cls, name, "it is not a plain `def` in the class body", hand=True)
    ast.increment_lineno(tree, function.__code__.co_firstlineno - tree.lineno)
    return tree


def _readable(function: types.FunctionType) -> ast.AST | None:
    """The syntax tree of ``function``, or None if its source cannot be read."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None


def _check(cls: type, name: str, tree: ast.FunctionDef, async_names: set[str]) -> None:
    """Refuse what the rules would translate into a wrong twin rather than an error."""
    if tree.decorator_list and does_io(tree, async_names):
        raise _refused(cls, name, "it is decorated, and a decorator may not await", hand=True)
    for node in ast.walk(tree):
        nested = isinstance(node, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef))
        if nested and node is not tree and does_io(node, async_names):
            raise _refused(
                cls,
                name,
                "it does I/O in a nested function or a lambda, which the twin cannot await",
                hand=True,
            )
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if ast.unparse(node) in INNER and isinstance(node, ast.Attribute):
            parent = parents.get(id(node))
            if not (
                isinstance(parent, ast.Attribute) and isinstance(parents.get(id(parent)), ast.Call)
            ):
                raise _refused(
                    cls,
                    name,
                    f"it uses `{ast.unparse(node)}` other than by calling its "
                    "operations (self._inner.get(key)), which the twin cannot follow",
                    hand=True,
                )
        call = call_of(node)
        if call in ASYNC_ITERATIONS or call in ASYNC_SECTIONS:
            parent = parents.get(id(node))
            used_as = (
                (isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is node)
                or isinstance(parent, ast.withitem)
                or (isinstance(parent, ast.Return) and name in ASYNC_RESULTS)
            )
            if not used_as:
                raise _refused(
                    cls,
                    name,
                    f"it uses `{ast.unparse(node)}` other than in a `for` or "
                    "`with` (or returned as it is), which becomes async",
                    hand=True,
                )


def _compiled(
    cls: type, function: types.FunctionType, twin: ast.AsyncFunctionDef
) -> Callable[..., Any]:
    """The twin's method: ``twin`` compiled with ``function``'s globals, closure cells,
    defaults and annotations (evaluated once, as the original's were)."""
    twin.decorator_list = []
    twin.returns = None
    arguments = twin.args
    arguments.defaults, arguments.kw_defaults = [], [None] * len(arguments.kwonlyargs)
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    for argument in [*every, arguments.vararg, arguments.kwarg]:
        if argument is not None:
            argument.annotation = None
    free = function.__code__.co_freevars
    # Compiled inside a function whose parameters are the original's free variables, so
    # that the twin's code reads the same cells (``__class__``, for ``super()``, too).
    factory = ast.FunctionDef(
        name="_factory",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=name) for name in free],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=[twin, ast.Return(value=ast.Name(id=twin.name, ctx=ast.Load()))],
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    module = ast.Module(body=[factory], type_ignores=[])
    ast.copy_location(factory, twin)
    ast.fix_missing_locations(module)
    namespace: dict[str, Any] = {}
    filename = function.__code__.co_filename
    exec(compile(module, filename, "exec"), function.__globals__, namespace)
    made = namespace["_factory"](*([None] * len(free)))
    cells = dict(zip(free, function.__closure__ or (), strict=True))
    result = types.FunctionType(
        made.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        tuple(cells[name] for name in made.__code__.co_freevars),
    )
    result.__kwdefaults__ = function.__kwdefaults__
    result.__annotations__ = dict(function.__annotations__)
    result.__doc__ = function.__doc__
    result.__qualname__ = f"Async{cls.__qualname__}.{function.__name__}"
    result.__module__ = function.__module__
    return result


def _refused(cls: type, method: str, why: str, hand: bool) -> ConfigurationError:
    name = cls.__qualname__
    how = (
        f" Write the twin by hand: class Async{cls.__name__}({cls.__name__}, "
        f"pystorage.aio.layers.AsyncWrapper) with an `async def` for {method} and every "
        f"other method of {cls.__name__} that does I/O, awaiting the layer below "
        f"(`await self._inner.get(key)`), and give Async{cls.__name__}(...) to "
        f"AsyncStorage in place of {cls.__name__}(...)."
        if hand
        else ""
    )
    return ConfigurationError(
        f"AsyncStorage cannot make the async twin of {name}.{method}: {why}.{how}"
    )
