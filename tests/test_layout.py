"""The shape of the package (issue 14), checked by the one ``python -m pytest`` CI runs.

- the import contracts in ``pyproject.toml`` (``[tool.importlinter]``: the layers cli → jobs → families →
  train/metrics/checkpoint → the model families, independent of each other → building blocks → core) hold;
- ``ruff check`` is clean (rules in ``[tool.ruff]``);
- no two genmodels modules import each other, even through others (no import cycle);
- ``genmodels --help`` answers without importing torch (the CLI loads the heavy modules only in the commands).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    """The console script ``name`` of the test extra, installed next to this interpreter."""
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{exe} not found: install the test extra (pip install -e '.[test]'), which provides {name}")
    return exe


def _run(cmd: list[str | Path], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_import_contracts_hold():
    """``lint-imports`` keeps every contract of ``[tool.importlinter]``: no module imports a layer above its own,
    and no model family imports another."""
    res = _run([_tool("lint-imports"), "--no-cache", "--no-logo"])
    assert res.returncode == 0, (f"lint-imports found broken import contracts (exit {res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")


def _layer_modules() -> set[str]:
    """The modules named in the layers contracts of ``[tool.importlinter]`` (optional ones too)."""
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        for layer in contract.get("layers", ()):
            for name in layer.replace("|", ":").split(":"):
                names.add(name.strip().strip("()"))
    return names


def test_every_module_is_in_a_layer():
    """Every top-level module of genmodels has its place in the layers contract (a module in no layer would be
    unchecked: import-linter's ``exhaustive`` needs ``containers``, so this test does that part)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("genmodels", cache_dir=None)
    missing = sorted(graph.find_children("genmodels") - _layer_modules())
    assert not missing, (f"modules in no layer of [tool.importlinter] in pyproject.toml: {missing}; "
                         "add each to the layer it belongs to")


def test_ruff_is_clean():
    """``ruff check src tests benchmarks`` reports nothing (rules and their reasons in ``[tool.ruff]``)."""
    res = _run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "src", "tests", "benchmarks"])
    assert res.returncode == 0, f"ruff check found problems (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"


def _strongly_connected_components(adj: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(sorted(adj[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(adj.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in adj.get(v, ()):
                        out.append(sorted(comp))
    return out


def test_strongly_connected_components_finds_a_cycle():
    """The cycle finder itself: a → b → c → a is one component, d alone is none."""
    adj = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert sorted(_strongly_connected_components(adj)) == [["a", "b", "c"], ["e"]]


def test_no_import_cycles():
    """No import cycle among genmodels modules. Every import counts, the ones inside functions too (a "lazy"
    import that closes a cycle is still a cycle in the design); only ``if TYPE_CHECKING:`` imports are left out,
    as they never run."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("genmodels", exclude_type_checking_imports=True, cache_dir=None)
    adj = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = _strongly_connected_components(adj)
    if cycles:
        lines = []
        for comp in cycles:
            members = set(comp)
            lines.append("cycle among " + ", ".join(comp) + ":")
            for m in comp:
                for imported in sorted(adj[m] & members):
                    for d in graph.get_import_details(importer=m, imported=imported):
                        lines.append(f"    {m} -> {imported} (l.{d['line_number']}: {d['line_contents'].strip()})")
        pytest.fail("import cycles among genmodels modules:\n" + "\n".join(lines))


_HELP_WITHOUT_TORCH = """
import sys
from genmodels.cli import app
try:
    app(["--help"], prog_name="genmodels")
    code = 0
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print("TORCH_MODULES_LOADED:", len(heavy), heavy[:5])
sys.exit(code)
"""


def test_cli_help_does_not_import_torch():
    """``genmodels --help`` answers (exit 0, a usage line) in a fresh interpreter without importing torch: the CLI
    module and ``genmodels/__init__.py`` import the heavy modules only when a command needs them."""
    res = _run([sys.executable, "-c", _HELP_WITHOUT_TORCH], timeout=120)
    assert res.returncode == 0, f"genmodels --help failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert "usage" in res.stdout.lower(), f"genmodels --help printed no usage line:\n{res.stdout}"
    assert "TORCH_MODULES_LOADED: 0 " in res.stdout, (
        "importing genmodels.cli and answering --help imported torch (it takes seconds); make the imports in "
        "genmodels/__init__.py and genmodels/cli.py lazy:\n" + res.stdout.strip().splitlines()[-1])
