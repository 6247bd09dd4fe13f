"""Writes the async API of ``pystorage/contrib/django.py`` from its sync methods.

Run ``make generate`` after changing a sync method of ``PyStorageCache``;
``tests/test_generated_async.py`` fails while the committed file differs from what this
script writes. The sync methods stay the source of each operation (and the code sync
callers run); each ``aX`` is ``X`` with these changes and no other:

* first, ``if self._async is None``: the stack has no native async form (only Redis has
  one), and ``X`` runs in Django's sync-to-async thread;
* a call on the storage (``self._storage.set(...)``) is awaited on its AsyncStorage
  (``await self._async.set(...)``); ``self._storage.top`` is ``await self._top()``, the
  AsyncStorage's top layer, prepared;
* ``key in self._storage`` is ``await self._async.contains(key)``, and
  ``del self._storage[key]`` is ``await self._async.delete(key)``.

A sync method that reaches the storage any other way is refused: the rules would miss it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "pystorage" / "contrib" / "django.py"
CLASS = "PyStorageCache"
#: The methods of Django's API that get an async twin (``close`` does nothing).
METHODS = (
    "get",
    "set",
    "add",
    "touch",
    "delete",
    "has_key",
    "incr",
    "get_many",
    "set_many",
    "delete_many",
    "clear",
)
BEGIN = "    # --- the async API, GENERATED"
END = "    # --- end of the generated async API ---"
STORAGE = "self._storage"


def _awaited(call: ast.expr) -> ast.Await:
    return ast.Await(value=call)


def _on_async(method: str, args: list[ast.expr]) -> ast.Await:
    """``await self._async.method(*args)``."""
    target = ast.Attribute(value=ast.parse("self._async", mode="eval").body, attr=method)
    return _awaited(ast.Call(func=target, args=args, keywords=[]))


class Translation(ast.NodeTransformer):
    """The rules of the module docstring, on one method's body."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.func, ast.Attribute):
            return node
        receiver = ast.unparse(node.func.value)
        if receiver == STORAGE:
            return _on_async(node.func.attr, node.args)
        if receiver == f"{STORAGE}.top":
            top = _awaited(ast.parse("self._top()", mode="eval").body)
            node.func.value = top
            return _awaited(node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if ast.unparse(node.comparators[-1]) != STORAGE:
            return node
        if len(node.ops) != 1 or not isinstance(node.ops[0], (ast.In, ast.NotIn)):
            raise SystemExit(f"no rule for {ast.unparse(node)!r}")
        contains = _on_async("contains", [node.left])
        if isinstance(node.ops[0], ast.NotIn):
            return ast.UnaryOp(op=ast.Not(), operand=contains)
        return contains

    def visit_Delete(self, node: ast.Delete) -> ast.AST:
        target = node.targets[0]
        if (
            len(node.targets) == 1
            and isinstance(target, ast.Subscript)
            and ast.unparse(target.value) == STORAGE
        ):
            return ast.Expr(value=_on_async("delete", [target.slice]))
        return node


def twin(method: ast.FunctionDef) -> ast.AsyncFunctionDef:
    """The async twin ``a<name>`` of ``method``."""
    copied = ast.parse(ast.unparse(method)).body[0]
    assert isinstance(copied, ast.FunctionDef)
    body = copied.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the sync docstring: the twin says what it is
    names = ", ".join(arg.arg for arg in copied.args.args[1:])
    prologue = ast.parse(
        f'"""``{method.name}``, awaited."""\n'
        "if self._async is None:\n"
        f"    return await _in_thread(self.{method.name})({names})\n"
    ).body
    translated = [Translation().visit(statement) for statement in body]
    module = ast.Module(body=translated, type_ignores=[])
    if STORAGE in ast.unparse(module):
        raise SystemExit(f"{method.name}: reaches {STORAGE} in a way no rule translates")
    made = ast.AsyncFunctionDef(
        name=f"a{method.name}",
        args=copied.args,
        body=[*prologue, *translated],
        decorator_list=[],
        returns=copied.returns,
        type_comment=None,
    )
    if sys.version_info >= (3, 12):
        made.type_params = []
    return ast.fix_missing_locations(made)


def generate() -> str:
    """The text of ``django.py`` with its async API generated anew."""
    source = TARGET.read_text()
    tree = ast.parse(source)
    cache = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == CLASS)
    methods = {n.name: n for n in cache.body if isinstance(n, ast.FunctionDef)}
    twins = "\n\n".join(ast.unparse(twin(methods[name])) for name in METHODS)
    indented = "".join(f"    {line}\n" if line else "\n" for line in twins.splitlines())
    lines = source.splitlines(keepends=True)
    begin = next(i for i, line in enumerate(lines) if line.startswith(BEGIN))
    header_end = next(i for i in range(begin, len(lines)) if not lines[i].startswith("    #"))
    end = next(i for i, line in enumerate(lines) if line.startswith(END))
    text = "".join([*lines[:header_end], "\n", indented, "\n", *lines[end:]])
    return _formatted(text)


def _formatted(source: str) -> str:
    """``source`` as ruff formats it (ast.unparse's quotes and line lengths go)."""
    ruff = str(Path(sys.executable).parent / "ruff")
    return subprocess.run(
        [ruff, "format", "--stdin-filename", str(TARGET), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main() -> None:
    TARGET.write_text(generate())
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
