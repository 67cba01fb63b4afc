"""House rules that keep the project installable and layered, read from the sources (no process started;
the checks that import or install in a fresh interpreter are in tests/integration/test_repo_layout.py)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What fdd_core (the library) never imports: the orchestration layer and the command line built on it.
NOT_IN_THE_LIBRARY = {"prefect", "flows", "tasks", "fdd_cli"}


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = _bash_blocks(setup)
    assert len(commands) == 2, commands
    assert all(c.startswith("python3 -m venv .venv && ") and "\n" not in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


def imported_top_levels(tree: ast.AST) -> set[str]:
    """Top-level names of every module the tree imports: import statements anywhere in it (a function's or
    a class's body, a try or if block) and importlib.import_module / __import__ calls with a literal name."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def test_imported_top_levels_sees_lazy_and_dynamic_imports():
    tree = ast.parse(
        "import os.path\n"
        "from . import sibling\n"
        "def f():\n"
        "    from flows.fdd_flow import fdd\n"
        "    import prefect\n"
        "class C:\n"
        "    def g(self):\n"
        "        try:\n"
        "            importlib.import_module('tasks.stages')\n"
        "        except ImportError:\n"
        "            __import__('fdd_cli')\n"
    )
    assert imported_top_levels(tree) == {"os", "flows", "prefect", "tasks", "fdd_cli"}


def test_no_fdd_core_source_imports_prefect_flows_tasks_or_the_cli():
    # Every import in every module, lazy ones inside functions included: a fresh-interpreter import
    # (tests/integration/test_repo_layout.py) runs no function body, so it cannot see those.
    sources = sorted((REPO / "fdd_core").rglob("*.py"))
    assert len(sources) > 20
    offenders = {
        str(path.relative_to(REPO)): sorted(found)
        for path in sources
        if (found := imported_top_levels(ast.parse(path.read_text(), filename=str(path))) & NOT_IN_THE_LIBRARY)
    }
    assert offenders == {}


def _task_functions():
    for path in sorted((REPO / "tasks").glob("*.py")):
        tree = ast.parse(path.read_text())
        stage_names = {
            alias.asname or alias.name
            for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fdd_core.")
            for alias in node.names
        }
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                "task" in ast.unparse(d) for d in node.decorator_list
            ):
                yield path.name, node, stage_names


def test_tasks_hold_no_stage_logic():
    # A task is a wrapper: a few statements, one fdd_core stage call, no loops of its own.
    tasks = list(_task_functions())
    assert len(tasks) >= 7
    for file, fn, stage_names in tasks:
        calls = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        stages = calls & stage_names - {"record_stage", "read_jsonl"}
        assert len(stages) == 1, f"{file}:{fn.name} calls {sorted(stages)}"
        assert not any(isinstance(n, (ast.For, ast.While)) for n in ast.walk(fn)), f"{file}:{fn.name} loops"
        assert len(fn.body) <= 6, f"{file}:{fn.name} has {len(fn.body)} statements"
