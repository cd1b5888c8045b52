"""The package's import graph (DESIGN.md section 3): generic layers never import a plug-in, no
import cycles, no upward imports. Function-level imports count: they are edges of the real graph."""
import ast
from pathlib import Path

import fastlight

ROOT = Path(fastlight.__file__).parent
# generic packages: they reach plug-ins (fastlight.shapes) only through fastlight.plugins
GENERIC = ("models", "diffusion", "data", "analyze", "prune", "train", "distill", "evaluate", "export", "decoder")
# the edges that still break the rule; the redesign (issue 14) empties this list
KNOWN_PLUGIN_IMPORTS = {
}


# the layers from the bottom up (DESIGN.md section 3): a module imports only its own layer and lower
# ones. The Shapes plug-in sits above every generic layer it builds on and below the commands that pick it.
LAYERS = [
    {"fileio", "config", "plugins", "errors"},
    {"models"},
    {"diffusion"},
    {"data"},
    {"analyze", "prune"},
    {"train", "distill"},
    {"evaluate"},
    {"export", "decoder"},
    {"report"},
    {"shapes"},
    {"run", "cli", "sample", "info", "commands", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every fastlight module `path` imports (from-imports of a submodule name resolved to it)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastlight"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists() \
                    or (ROOT.parent / sub.replace(".", "/") / "__init__.py").exists()
                out.add(sub if is_module else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fastlight")}
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}


def test_generic_packages_never_import_a_plugin():
    bad = {}
    for mod, deps in graph().items():
        layer = mod.split(".")[1] if "." in mod else ""
        if layer in GENERIC:
            hits = sorted(d for d in deps if d == "fastlight.shapes" or d.startswith("fastlight.shapes."))
            if hits:
                bad[mod] = hits
    assert bad == KNOWN_PLUGIN_IMPORTS


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_belongs_to_a_layer():
    assert sorted({layer_of(m) for m in graph()} - set(RANK) - {""}) == []


def test_no_upward_import():
    up = sorted(f"{m} -> {d}" for m, deps in graph().items() for d in deps
                if layer_of(m) in RANK and layer_of(d) in RANK and RANK[layer_of(d)] > RANK[layer_of(m)])
    assert up == []


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d not in g or d == m:
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_walk_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from fastlight.shapes import world\n")
    assert imports_of(f) == {"fastlight.shapes.world"}


def command_functions_outside_commands(root: Path = ROOT) -> list[str]:
    """`path:function` for every function (top level, nested or a method) named `*_command` in a
    module outside fastlight/commands/: a verb belongs in the commands layer, a component is named
    for what it does."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_command"):
                found.append(f"{path.relative_to(root).as_posix()}:{node.name}")
    return found


def test_verbs_live_only_in_the_commands_layer():
    assert command_functions_outside_commands() == []


def test_the_verb_check_sees_a_command_function(tmp_path):
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "ok.py").write_text("def fine_command():\n    pass\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "lib.py").write_text("class A:\n    def f(self):\n        def run_command():\n            pass\n")
    assert [f.split(":")[1] for f in command_functions_outside_commands(tmp_path)] == ["run_command"]
