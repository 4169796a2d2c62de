"""How the packages may import each other, read from the source with ast.

The web layer's modules form a DAG: a circle among them (handlers needing ws
needing handlers) only worked through imports tucked inside functions, and
broke as soon as one was moved to the top of a file.

The inner packages never import the application: router/ (the rules) imports
none of the others, classifier/ and storage/ not tierdesk/. Each has the
errors of its own words for that (router/errors.py, classifier/errors.py,
storage/errors.py), mapped to HTTP in tierdesk/web/errors.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _type_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.AST, module: str, *, runtime_only: bool, names: bool = True) -> Iterator[str]:
    """The dotted names ``module`` imports, anywhere in the file (a function's
    body too). With ``runtime_only``, imports under ``if TYPE_CHECKING:`` are
    left out: they never run, so they cannot make a circle at import time.
    With ``names``, ``from p import x`` yields ``p.x`` as well as ``p`` (x may
    be a module)."""
    package = module.rsplit(".", 1)[0]

    def walk(node: ast.AST) -> Iterator[str]:
        if runtime_only and isinstance(node, ast.If) and _type_only(node):
            for child in node.orelse:
                yield from walk(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            yield name
            # `from . import keys` imports the module tierdesk.web.keys.
            for alias in node.names if names else ():
                yield f"{name}.{alias.name}"
        for child in ast.iter_child_nodes(node):
            yield from walk(child)

    yield from walk(tree)


def module_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports at run time."""
    modules = {f"{package}.{p.stem}": p for p in sorted(package_dir.glob("*.py")) if p.stem != "__init__"}
    return {name: {m for m in imported(ast.parse(path.read_text(encoding="utf-8")), name, runtime_only=True)
                   if m in modules and m != name}
            for name, path in modules.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in the graph, as the path around it, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_web_modules_import_each_other_without_a_circle() -> None:
    graph = module_graph(ROOT / "tierdesk" / "web", "tierdesk.web")
    assert "tierdesk.web.handlers" in graph and graph["tierdesk.web.handlers"], "no imports found: the parser is broken"
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


def test_keys_import_nothing_at_run_time_from_the_web_layer() -> None:
    # keys.py is what every web module shares: it names types only, so it
    # can never close a circle.
    assert module_graph(ROOT / "tierdesk" / "web", "tierdesk.web")["tierdesk.web.keys"] == set()


# The only import of the application left in an inner package: the `faq`
# subcommands (classifier/cli.py, also run as `python -m classifier.cli`)
# draw the application's terminal progress bar.
KNOWN_UPWARD = {("classifier/cli.py", "tierdesk.progress")}


def upward_imports(package: str, forbidden: tuple[str, ...], root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, module) for each import of a forbidden package, type-only ones too."""
    found = set()
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        module = rel.removesuffix(".py").replace("/", ".")
        for name in imported(ast.parse(path.read_text(encoding="utf-8")), module, runtime_only=False, names=False):
            if name.split(".")[0] in forbidden:
                found.add((rel, name))
    return found


def test_the_rules_import_no_other_package_of_ours() -> None:
    assert upward_imports("router", ("tierdesk", "classifier", "storage")) == set()


def test_classifier_and_storage_do_not_import_the_application() -> None:
    found = upward_imports("classifier", ("tierdesk",)) | upward_imports("storage", ("tierdesk",))
    assert found - KNOWN_UPWARD == set()


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "router" / "sub").mkdir(parents=True)
    (tmp_path / "router" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tierdesk.errors import NotFound\n")
    (tmp_path / "router" / "sub" / "b.py").write_text("def f():\n    import tierdesk.web.app\n")
    (tmp_path / "router" / "c.py").write_text("from router.errors import NotFound\nfrom . import tierdesk_words\n")
    assert upward_imports("router", ("tierdesk",), tmp_path) == {("router/a.py", "tierdesk.errors"),
                                                                 ("router/sub/b.py", "tierdesk.web.app")}


def test_a_circle_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import f\n"
                                   "from pkg.a import y\n")
    graph = module_graph(tmp_path, "pkg")
    assert cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    assert cycle(module_graph(tmp_path, "pkg")) is None


def test_the_server_imports_no_scikit_learn() -> None:
    """scikit-learn (and the SciPy modules it pulls in) is ~75 MiB of a
    serving process's memory; serving needs only the compiled classifier
    (classifier/fast.py). Training and clustering import it when they run."""
    import subprocess
    import sys

    probe = ("import sys, tierdesk.cli, tierdesk.web.app, tierdesk.workers; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
