"""Imports flow one way: core → files and models → bank and inference → training → cli, serve.

Every import in src/diffprune is read, at module level and inside functions alike, and each
module may import only its own layer or one below. A new module must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [
    ("core", ["diffprune._version", "diffprune.bounds", "diffprune.config", "diffprune.gates",
              "diffprune.native", "diffprune.kernels", "diffprune.compact_adamw",
              "diffprune.diff", "diffprune.projection", "diffprune.targets", "diffprune.model",
              "diffprune.density_control", "diffprune.optim", "diffprune.nonadaptive"]),
    ("files and models", ["diffprune.codec", "diffprune.fingerprint", "diffprune.run_folder",
                          "diffprune.task_file", "diffprune.export", "diffprune.pretrained",
                          "diffprune.layout", "diffprune.plots", "diffprune.loading",
                          "diffprune.data"]),
    ("bank and inference", ["diffprune.bank", "diffprune.inference"]),
    ("training", ["diffprune.training"]),
    ("cli and serve", ["diffprune.cli", "diffprune.serve"]),
]

# The one deliberate upward edge, imported at call time, never at import time: PEFT's shape,
# ``model.save_pretrained`` / ``DiffPruneModel.from_pretrained`` are methods of the core model
# that hand the writing and reading to the files layer.
ALLOWED = {("diffprune.model", "diffprune.pretrained")}
# The package itself re-exports the public API of the layers below training (the Trainer lives
# in ``diffprune.training``).
FACADE = "diffprune"
FACADE_LAYER = 2  # bank and inference: the highest layer the package may import


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise KeyError(module)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "diffprune").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported diffprune module, line, at import time) for every import in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            known = modules()
            # ``from diffprune import codec`` imports a module; ``from x import name`` its parent
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        found += [(n, node.lineno, id(node) in top_level) for n in names
                  if n == FACADE or n.startswith(FACADE + ".")]
    return found


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if m != FACADE and _try_layer(m) is None]
    assert not unplaced, f"give these modules a layer in {Path(__file__).name}: {unplaced}"


def _try_layer(module: str) -> int | None:
    try:
        return layer_of(module)
    except KeyError:
        return None


def upward_imports(module: str, path: Path) -> list[str]:
    """What ``module`` imports against the direction of the layers, one line per import."""
    upward = []
    for target, line, at_import in imports_of(module, path):
        allowed_here = (module, target) in ALLOWED and not at_import
        if module == FACADE:  # re-exports the layers below training, and nothing above
            if layer_of(target) > FACADE_LAYER:
                upward.append(f"line {line}: {target} ({LAYERS[layer_of(target)][0]}, above "
                              f"what the package re-exports)")
        elif target == FACADE:
            upward.append(f"line {line}: the package `diffprune` itself; import the module")
        elif layer_of(target) > layer_of(module) and not allowed_here:
            upward.append(f"line {line}: {target} ({LAYERS[layer_of(target)][0]}, above "
                          f"{LAYERS[layer_of(module)][0]})")
    return upward


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_imports_a_layer_above_its_own(module):
    upward = upward_imports(module, modules()[module])
    assert not upward, f"{module} imports upward:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above must be able to fail: a core module importing training is caught."""
    fake = tmp_path / "gates.py"
    fake.write_text("from diffprune import __version__\n"
                    "def f():\n    from diffprune.training.recipe import train_task\n")
    assert imports_of("diffprune.gates", fake) == [("diffprune", 1, True),
                                                   ("diffprune.training.recipe", 3, False)]
    assert len(upward_imports("diffprune.gates", fake)) == 2
    # The package may not reach up to training, not even on first use.
    fake.write_text("def __getattr__(name):\n    from diffprune.training import trainer\n")
    assert len(upward_imports("diffprune", fake)) == 1
    # The allowed edge is allowed only at call time.
    fake.write_text("from diffprune.pretrained import save_pretrained\n")
    assert upward_imports("diffprune.model", fake) == [
        "line 1: diffprune.pretrained (files and models, above core)"]
