"""Connection diagrams: every view of every zoo file, styles, determinism, notebooks, no-Graphviz."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import archdsl
from archdsl import zoo_names
from archdsl.render import ArchRenderError, fold, render, render_dot

GOLDEN = Path(__file__).parent / "fixtures" / "render"

SMALL = '''
"""A small network with every edge kind."""
block unit(c, stride = 1) {
    conv1: conv(c, k=3, stride=stride, pad=1, bias=false) -> bn1: batchnorm -> relu1: relu
    conv2: conv(c, k=3, pad=1, bias=false) -> bn2: batchnorm
    skip in -> bn2 via projection
    relu2: relu
}
block dense(k) {
    bn: batchnorm -> relu -> conv: conv(k, k=3, pad=1)
}
block se(r = 2) {
    squeeze: adaptive_avgpool(1) -> fc1: conv(in.channels // r, k=1) -> relu -> fc2: conv(in.channels, k=1) -> sigmoid
    scaled: mul(in, sigmoid)
}
network small(num_classes = 10) {
    input image: [3, 16, 16]
    stem: conv(8, k=3, pad=1)
    layer1: stage unit(8) x 3
    layer2: stage unit(16) x 2, first(stride=2)
    block1: stage dense(4) x 3, connect=dense
    attention: se()
    pool: adaptive_avgpool(1) -> flatten -> fc: linear(num_classes)
}
'''


@pytest.mark.parametrize("level", ["stage", "block", "layer"])
def test_golden_dot(level):
    """The DOT of a small network, byte for byte (regenerate with ARCHDSL_REGEN=1 after a deliberate change)."""
    text = render_dot(SMALL, level=level)
    path = GOLDEN / f"small_{level}.dot"
    if os.environ.get("ARCHDSL_REGEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", zoo_names())
@pytest.mark.parametrize("level", ["stage", "block", "layer"])
def test_every_view_of_every_zoo_file(name, level):
    g = archdsl.graph(name)
    view = fold(g, level)
    assert sorted(n for u in view.units for n in u.nodes) == sorted(g.nodes)  # nothing lost or doubled
    units = {u.id for u in view.units}
    assert all(e.source in units and e.target in units for e in view.edges)
    text = render_dot(g, level=level)
    assert text.startswith("digraph")


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "googlenet", "highway_fc", "cifar_resnet"])
def test_default_view_lays_out_with_graphviz(name, tmp_path):
    out = render(name, tmp_path / f"{name}.svg")
    assert out.startswith("digraph")
    svg = (tmp_path / f"{name}.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "<title>" in svg


def test_runs_of_identical_blocks_fold_into_x_n():
    view = fold(archdsl.graph("resnet50"), "block")
    runs = {u.id: u.count for u in view.units if u.kind == "run"}
    assert runs == {"layer1.1+": 2, "layer2.1+": 3, "layer3.1+": 5, "layer4.1+": 2}
    assert "× 5" in render_dot("resnet50")


def test_stage_view_shows_each_stage_once():
    view = fold(archdsl.graph("resnet50"), "stage")
    assert [u.id for u in view.units if u.kind == "stage"] == ["layer1", "layer2", "layer3", "layer4"]


def test_expand_opens_chosen_groups():
    g = archdsl.graph("resnet50")
    opened = fold(g, "block", expand=("layer2", "layer2.0"))
    ids = {u.id for u in opened.units}
    assert "layer2.0.conv1" in ids and "layer2.1" in ids and "layer2.1+" not in ids
    assert "layer3.1+" in ids  # the other stages stay folded


def test_dense_blocks_are_drawn_as_a_bus_with_linear_edges():
    g = archdsl.graph("densenet121")
    dense_edges = sum(1 for _, _, d in g.edges(data=True) if d["kind"] == "concat")
    view = fold(g, "layer")
    drawn = sum(1 for e in view.edges if e.kind == "concat")
    layers = 6 + 12 + 24 + 16
    # every layer's input concat takes all earlier maps, and the block's output concat all of them
    assert dense_edges == sum((n * (n + 1) // 2 - 1) + (n + 1) for n in (6, 12, 24, 16)) == 593
    assert drawn <= 2 * layers + 8  # two per layer on the drawing


def test_edge_kinds_have_their_own_styles():
    text = render_dot(SMALL, level="layer")
    skip = [line for line in text.splitlines() if "style=dashed" in line and "->" in line]
    concat = [line for line in text.splitlines() if "arrowhead=diamond" in line and "->" in line]
    gate = [line for line in text.splitlines() if "arrowhead=odot" in line and "->" in line]
    assert skip and concat and gate
    assert "cluster_legend" in text and "skip (summed)" in text


def test_annotations_shapes_params_title_totals_and_tooltips():
    text = render_dot("resnet18")
    assert "ResNet-18 (He et al. 2015" in text
    assert "11,689,512 parameters" in text
    assert "512×7×7" in text
    tooltip = re.search(r'"layer2\.0" \[.*tooltip="([^"]*)"', text).group(1)
    assert "basic(planes=128, stride=2)" in tooltip and "resnet18.arch:12" in tooltip
    layer = re.search(r'\tconv1 \[.*tooltip="([^"]*)"', text).group(1)
    assert "conv(out=64, k=7, stride=2, pad=3, bias=false" in layer and "resnet.arch" in layer


def test_left_to_right_and_without_clusters():
    assert "rankdir=LR" in render_dot("resnet18", rankdir="LR")
    assert "cluster_layer" not in render_dot("resnet18", clusters=False)
    with pytest.raises(ArchRenderError):
        render_dot("resnet18", rankdir="XX")


def test_dot_text_is_identical_across_hash_seeds(tmp_path):
    code = "import archdsl.render as r, sys; sys.stdout.write(r.render_dot('densenet121', level='layer'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, check=True
        ).stdout
        for seed in ("0", "7", "4242")
    }
    assert len(outputs) == 1


def test_svg_is_identical_across_runs(tmp_path):
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    render("cifar_resnet", a)
    render("cifar_resnet", b)
    assert a.read_bytes() == b.read_bytes()


def test_graph_shows_itself_as_svg_in_notebooks():
    svg = archdsl.graph("resnet18")._repr_svg_()
    assert svg is not None and "<svg" in svg


def test_without_dot_binary_dot_files_still_work(monkeypatch, tmp_path):
    monkeypatch.setattr("archdsl.render.dot.shutil.which", lambda name: None)
    render("resnet18", tmp_path / "r.dot")
    assert (tmp_path / "r.dot").read_text(encoding="utf-8").startswith("digraph")
    with pytest.raises(ArchRenderError, match="install Graphviz") as info:
        render("resnet18", tmp_path / "r.png")
    assert "apt-get install graphviz" in str(info.value)
    assert archdsl.graph("resnet18")._repr_svg_() is None


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(ArchRenderError, match="unknown format `jpg`"):
        render("resnet18", tmp_path / "r.jpg")


def test_cli_render(tmp_path):
    out = tmp_path / "d.svg"
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "render", "densenet121", "--expand", "features.denseblock1", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "denselayer3.in" in out.read_text(encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "archdsl", "render", "resnet18", "--expand", "layer9", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "layer9" in bad.stderr
