"""The package's layers: a lower layer never imports a higher one; TensorFlow and Horovod stay
where they belong."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lhco_diffusion

PACKAGE = Path(lhco_diffusion.__file__).parent
# Lowest first. A module may import its own layer and every layer before it.
LAYERS = (
    ("lhco_diffusion.errors", "lhco_diffusion.files", "lhco_diffusion.config", "lhco_diffusion.cli",
     "lhco_diffusion.distributed"),
    ("lhco_diffusion.data",),
    ("lhco_diffusion.solvers",),
    ("lhco_diffusion.models",),
    ("lhco_diffusion.workflow",),
    ("lhco_diffusion.commands",),
)
SHIMS = ("train", "prepare", "sample", "classify", "evaluate", "likelihood", "pipeline")  # python -m entry points


def modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages([str(PACKAGE)], "lhco_diffusion."))


def layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    if module.removeprefix("lhco_diffusion.") in SHIMS:
        return len(LAYERS)
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS")


def imported(module: str) -> set[str]:
    """The lhco_diffusion modules (and third-party top-level names) ``module`` imports anywhere."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "lhco_diffusion" or node.module.startswith("lhco_diffusion."):
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_imports_and_has_a_layer():
    for module in modules():
        __import__(module)
        layer(module)


@pytest.mark.parametrize("module", modules())
def test_no_module_imports_a_higher_layer(module):
    own = layer(module)
    for name in imported(module):
        if name.startswith("lhco_diffusion.") and name.removeprefix("lhco_diffusion.").split(".")[0] != "":
            target = name
            while target not in modules() and "." in target.removeprefix("lhco_diffusion."):
                target = target.rsplit(".", 1)[0]  # from package import name -> package
            assert layer(target) <= own, f"{module} (layer {own}) imports {name} (layer {layer(target)})"


def test_only_distributed_imports_horovod():
    importers = [module for module in modules() if any(name.split(".")[0] == "horovod" for name in imported(module))]
    assert importers == ["lhco_diffusion.distributed"]


@pytest.mark.parametrize("module", ["lhco_diffusion.commands.evaluate", "lhco_diffusion.workflow.scores",
                                    "lhco_diffusion.workflow.evaluation", "lhco_diffusion.data.selection",
                                    "lhco_diffusion.config"])
def test_module_runs_without_tensorflow(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", f"importing {module} loads TensorFlow"
