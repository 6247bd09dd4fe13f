"""The rules that turn a sync layer's method into its async twin's, from its source.

One set of rules for both uses: ``tools/generate_async.py`` writes the twins of the
library's layers with them (``pystorage/aio/layers.py``), and ``pystorage.aio.twins``
makes the twin of a user's wrapper with them when an ``AsyncStorage`` is built. The
changes, and no others:

* a call that does I/O is awaited: an operation of the layer below
  (``self._inner.get(...)``), a Redis command (``self.client.get(...)``, and the commands
  of a pipeline that run at once: ``pipe.watch``, ``pipe.get``, ``pipe.execute``), or a
  method of ``self`` that became async;
* ``for`` over an iteration that does I/O (``self.keys()``, ``self.client.scan_iter()``),
  in a statement or a comprehension, becomes ``async for``; ``with`` over a section that
  does (``self._inner.exclusive()``, ``self.client.pipeline()``) becomes ``async with``;
* a method in which any of this happened becomes ``async def``.

Which operations of the layer below do I/O is read from the protocol's definition
(``pystorage.layers.protocol``: the operations marked ``@io``), never listed here.
"""

from __future__ import annotations

import ast
import sys

from pystorage.layers.protocol import io_operations


def _results() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The I/O operations of the protocol: awaited ones, async iterators, async sections."""
    awaited, iterators, sections = set(), set(), set()
    for name, operation in io_operations().items():
        returns = str(operation.__annotations__.get("return", ""))
        if returns.startswith("Iterator["):
            iterators.add(name)
        elif returns.startswith("AbstractContextManager["):
            sections.add(name)
        else:
            awaited.add(name)
    return frozenset(awaited), frozenset(iterators), frozenset(sections)


#: The operations of the protocol that do I/O and are awaited: on the layer below, and
#: async in every class that has them. ``_ITERATORS`` and ``_SECTIONS``: those that return
#: an async iterator or section, and stay sync themselves.
OPERATIONS, _ITERATORS, _SECTIONS = _results()
#: The names under which a layer reaches the layer below, or its base's operation.
#: (``super()`` in a twin made at run time finds the base's twin: it keeps the method's
#: ``__class__``; the generator refuses it, since its twins are new class bodies.)
INNER = frozenset({"self._inner", "self.inner", "super()"})
#: (receiver, method) calls that do I/O, besides the operations of ``self._inner``.
AWAITED = frozenset(
    {("self.client", name) for name in ("get", "set", "eval", "evalsha", "type", "mget", "mset")}
    | {("self.client", "mget_nonatomic")}
    | {("pipe", name) for name in ("watch", "get", "execute")}
)
#: Calls that become another, awaited: redis.asyncio closes a client with ``aclose``.
RENAMED = {("self.client", "close"): "aclose"}
#: Iterations that do I/O: ``async for`` over them.
ASYNC_ITERATIONS = frozenset(
    {("self", name) for name in _ITERATORS}
    | {(inner, name) for inner in INNER for name in _ITERATORS}
    | {("self.client", "scan_iter")}
)
#: Sections that do I/O: ``async with``.
ASYNC_SECTIONS = frozenset(
    {(inner, name) for inner in INNER for name in _SECTIONS} | {("self.client", "pipeline")}
)
#: Methods that stay sync whatever they call: the assembly of a stack.
SYNC_ONLY = frozenset({"link", "__attrs_post_init__", "value_kind_below", "leaves_stack"})
#: Methods whose result, not the method, becomes async: an async iterator or section.
ASYNC_RESULTS = _ITERATORS | _SECTIONS


def call_of(node: ast.AST) -> tuple[str, str] | None:
    """(receiver, method) of a call such as ``self._inner.get(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return ast.unparse(node.func.value), node.func.attr
    return None


def awaits(call: tuple[str, str] | None, async_names: set[str]) -> bool:
    """Whether ``call`` does I/O: awaited in the twin (``async_names``: the methods of
    ``self`` that became async)."""
    if call is None:
        return False
    receiver, name = call
    if receiver in INNER:
        return name in OPERATIONS
    if receiver == "self":
        return name in async_names and name not in ASYNC_RESULTS
    return call in AWAITED or call in RENAMED


def does_io(node: ast.AST, async_names: set[str]) -> bool:
    """Whether anything in ``node`` would be awaited, iterated or entered async."""
    for inner in ast.walk(node):
        if awaits(call_of(inner), async_names):
            return True
        if call_of(inner) in ASYNC_ITERATIONS or call_of(inner) in ASYNC_SECTIONS:
            return True
    return False


class Translation(ast.NodeTransformer):
    """The rules of the module docstring, applied to one method's body."""

    def __init__(self, async_names: set[str]) -> None:
        self.async_names = async_names
        self.changed = False

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node  # a function nested in a method stays sync: nothing in it is awaited

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        call = call_of(node)
        if not awaits(call, self.async_names):
            return node
        self.changed = True
        if call in RENAMED:
            assert isinstance(node.func, ast.Attribute)
            node.func.attr = RENAMED[call]
        return ast.Await(value=node)

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        if call_of(node.iter) not in ASYNC_ITERATIONS:
            return node
        self.changed = True
        return ast.AsyncFor(target=node.target, iter=node.iter, body=node.body, orelse=node.orelse)

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        if call_of(node.iter) in ASYNC_ITERATIONS:
            self.changed = True
            node.is_async = 1
        return node

    def visit_With(self, node: ast.With) -> ast.AST:
        self.generic_visit(node)
        if not any(call_of(item.context_expr) in ASYNC_SECTIONS for item in node.items):
            return node
        self.changed = True
        return ast.AsyncWith(items=node.items, body=node.body)


def translated(method: ast.FunctionDef, async_names: set[str]) -> ast.AsyncFunctionDef | None:
    """The async form of ``method``, or None if none of its statements changes."""
    copied = ast.parse(ast.unparse(method)).body[0]
    assert isinstance(copied, ast.FunctionDef)
    translation = Translation(async_names)
    body = [translation.visit(statement) for statement in copied.body]
    if not translation.changed and not (
        method.name in async_names and method.name not in ASYNC_RESULTS
    ):
        return None
    twin = ast.AsyncFunctionDef(
        name=copied.name,
        args=copied.args,
        body=body,
        decorator_list=copied.decorator_list,
        returns=copied.returns,
        type_comment=None,
    )
    if sys.version_info >= (3, 12):
        twin.type_params = []
    return twin
