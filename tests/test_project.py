"""Project hygiene: the two dependency lists agree; outputs/ is ignored; the README gives the two commands."""

import re

import tomllib
import yaml

from workbench.paths import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    listed = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        else:
            listed.add(_name(dep))
    listed -= {"python", "pip"}
    assert listed == wanted


def test_readme_gives_the_two_commands_and_ci_runs_the_tests():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_outputs_is_ignored_but_kept():
    assert (REPO_ROOT / "outputs" / ".gitkeep").exists()
    assert "outputs/*" in (REPO_ROOT / ".gitignore").read_text()


def test_notebooks_use_nbdime_drivers():
    assert "*.ipynb diff=jupyternotebook merge=jupyternotebook" in (REPO_ROOT / ".gitattributes").read_text()
    assert "nbdime config-git --enable" in (REPO_ROOT / "Makefile").read_text()


def _import_graph() -> dict:
    """workbench module -> workbench modules it imports, at module level or inside functions."""
    import ast

    package = REPO_ROOT / "workbench"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbench"):
                edges |= {node.module} & set(modules)
                edges |= {f"{node.module}.{a.name}" for a in node.names} & set(modules)
        graph[name] = edges - {name}
    return graph


def test_no_import_cycle_in_workbench_function_level_imports_included():
    graph = _import_graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_module_is_past_400_lines():
    long = {p.name: n for p in (REPO_ROOT / "workbench").rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
