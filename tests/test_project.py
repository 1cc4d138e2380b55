"""Project hygiene: the two dependency lists agree; outputs/ is ignored; the README gives the two commands."""

import re

import pytest
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


def test_notebooks_use_nbdime_drivers_and_nbstripout_by_absolute_path():
    """The behaviour in a fresh clone: tests/test_git_notebooks.py."""
    assert (
        "*.ipynb diff=jupyternotebook merge=jupyternotebook filter=nbstripout"
        in (REPO_ROOT / ".gitattributes").read_text()
    )
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "$(abspath $(BIN))/git-nbdiffdriver diff" in makefile and "filter.nbstripout.clean" in makefile


# Lowest first: a module may import its own layer and the layers below it, never one above (STYLE.md 16).
LAYERS = (
    (
        "base",
        ("errors", "paths", "yamlfile", "runtime", "stats", "metrics", "slo", "names", "terminal", "console")
        + ("jupyter_kernel", "redact"),
    ),
    ("results", ("results",)),
    ("inputs", ("models", "training", "workloads")),
    ("engines", ("measure", "optimise", "endpoint")),
    ("experiments", ("experiments",)),
    ("sweep", ("sweep",)),
    ("analysis", ("analysis",)),
    ("present", ("present",)),
    ("app", ("cli", "doctor", "demo", "build_model", "run", "serve", "imports", "")),
)


def layer_of(module: str) -> int:
    """The layer of `workbench.<module>`: its first dotted part names it (the package itself is the app)."""
    head = module.split(".")[1] if "." in module else ""
    for index, (_, heads) in enumerate(LAYERS):
        if head in heads:
            return index
    raise AssertionError(f"workbench.{module.partition('.')[2]} belongs to no layer: add it to LAYERS")


def _import_edges() -> dict:
    """workbench module -> [(imported workbench module, line)], at module level or inside functions."""
    import ast

    package = REPO_ROOT / "workbench"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        edges = []
        for node in ast.walk(ast.parse(path.read_text())):
            found = set()
            if isinstance(node, ast.Import):
                found = {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbench"):
                found = ({node.module} | {f"{node.module}.{a.name}" for a in node.names}) & set(modules)
                if {f"{node.module}.{a.name}" for a in node.names} & found:
                    found.discard(node.module)  # `from workbench.x import y` where y is a module: the edge is y
            edges += [(target, node.lineno) for target in sorted(found - {name})]
        graph[name] = edges
    return graph


def _import_graph() -> dict:
    return {name: {target for target, _ in edges} for name, edges in _import_edges().items()}


def test_imports_only_point_down_the_layers():
    problems = []
    for module, edges in sorted(_import_edges().items()):
        for target, line in edges:
            if layer_of(target) > layer_of(module):
                path = module.replace(".", "/") + ".py"
                problems.append(
                    f"{path}:{line} imports {target} ({LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]})"
                )
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_layer_test_catches_an_upward_import():
    assert layer_of("workbench.measure.timed") < layer_of("workbench.present.report")
    assert layer_of("workbench.stats") == 0 and layer_of("workbench.cli") == len(LAYERS) - 1
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("workbench.nowhere")


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
