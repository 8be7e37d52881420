"""README.md, docs/language.md and the code describe the same language."""

from __future__ import annotations

import re

import pytest

import archdsl
from archdsl.ops import REGISTRY, user_ops


def arch_blocks(path):
    text = path.read_text(encoding="utf-8")
    return re.findall(r"```arch\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/language.md"])
def test_every_arch_example_parses_and_every_network_builds(repo_root, doc, monkeypatch):
    monkeypatch.chdir(repo_root)
    blocks = arch_blocks(repo_root / doc)
    assert blocks, f"{doc} has no ```arch examples"
    for block in blocks:
        archdsl.parse(block, doc)
        if re.search(r"^network ", block, flags=re.M):
            archdsl.graph(block)


def test_every_op_and_argument_is_documented(repo_root):
    text = (repo_root / "docs/language.md").read_text(encoding="utf-8")
    table = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    for name in user_ops():
        row = next((line for key, line in table.items() if f"`{name}`" in key), None)
        assert row is not None, f"op {name} is missing from the op table"
        for arg in REGISTRY[name].args:
            assert f"`{arg.name}" in row, f"argument {name}.{arg.name} is missing from the op table"


def test_every_error_code_is_in_the_catalogue(repo_root):
    text = (repo_root / "docs/language.md").read_text(encoding="utf-8")
    used = set()
    for path in (repo_root / "archdsl").rglob("*.py"):
        used |= set(re.findall(r'code="(E\d+)"', path.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^\| (E\d+) ", text, flags=re.M))
    for low, high in re.findall(r"^\| E(\d+)-E(\d+) ", text, flags=re.M):  # ranges such as E601-E605
        documented |= {f"E{n}" for n in range(int(low), int(high) + 1)}
    assert used <= documented, f"undocumented error codes: {sorted(used - documented)}"


def test_readme_layout_names_every_module(repo_root):
    """The README's layout section is the map of the code: every module and package of archdsl is on it."""
    layout = (repo_root / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    package = repo_root / "archdsl"
    names = [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    names += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()]
    missing = [name for name in sorted(names) if name not in layout]
    assert not missing, f"README's layout does not mention {missing}"
