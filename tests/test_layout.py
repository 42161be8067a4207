"""The plugin apart from the lab (docs/layout.md): importing the plugin, as
``--user-dir`` does, loads no lab module; no plugin module imports the lab or
its own package by absolute name; neither package runs a script by path."""

import ast
import json
import re
import subprocess
import sys

import pytest

from harness import CHILD_ENV, REPO_ROOT

PACKAGES = ("fairseq_maskplug", "maskplug_lab")
SCRIPT_PATH = re.compile(r"^[\w./-]+\.(py|sh)$")  # a path to a Python or shell file, as a string of its own


def modules_of(package: str):
    return sorted((REPO_ROOT / package).rglob("*.py"))


def imported_names(path) -> set:
    """Absolute module names a source file imports (relative ones resolved to None)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_importing_the_plugin_loads_no_lab_module():
    code = "import json, sys, fairseq_maskplug; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += f"{PACKAGES!r})))"
    run = subprocess.run([sys.executable, "-c", code], env=CHILD_ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert "fairseq_maskplug.tasks.masked_lm_plus" in loaded and "fairseq_maskplug.models.mae_lm" in loaded
    assert [m for m in loaded if m.startswith("maskplug_lab")] == []
    print(f"importing the plugin loads {len(loaded)} of its modules, none of the lab's")


@pytest.mark.parametrize("path", modules_of("fairseq_maskplug"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_plugin_module_imports_the_lab_or_its_own_package_by_name(path):
    """Inside the plugin, its modules import each other relatively (the root
    package's __init__ aside), and never the lab."""
    names = {name.split(".")[0] for name in imported_names(path)}
    assert "maskplug_lab" not in names
    if path != REPO_ROOT / "fairseq_maskplug" / "__init__.py":
        assert "fairseq_maskplug" not in names


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_runs_a_script_by_path(package):
    """No string in either package names a file of scripts/ to execute (a
    docstring may say which script to run, in prose)."""
    for path in modules_of(package):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr)}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert node.value != "scripts" and not SCRIPT_PATH.match(node.value), (path, node.value)


def test_a_corpus_prepared_from_the_packaged_brown_before_the_move_is_found_after_it(brown_data, tmp_path):
    """A data dir's manifest records its corpus's path; one prepared from the
    packaged Brown corpus where the plugin carried it names the lab's copy."""
    from maskplug_lab.corpus.prepare import MANIFEST, read_manifest
    from maskplug_lab.corpus.sources import PACKAGED_BROWN

    record = json.loads((brown_data / MANIFEST).read_text())
    assert record["input"] == str(PACKAGED_BROWN)
    record["input"] = "/old/checkout/fairseq_maskplug/corpus/brown/brown.zip"
    (tmp_path / MANIFEST).write_text(json.dumps(record))
    assert read_manifest(str(tmp_path)).input == str(PACKAGED_BROWN)
    record["input"] = "/elsewhere/brown.zip"
    (tmp_path / MANIFEST).write_text(json.dumps(record))
    assert read_manifest(str(tmp_path)).input == "/elsewhere/brown.zip"
