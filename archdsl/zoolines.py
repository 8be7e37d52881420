"""Lines of code: each zoo file (with the libraries it imports) beside torchvision's Python for the same model.

Counted the same way on both sides: lines that hold code, not blank lines,
comments or docstrings. torchvision's side is the classes and functions that
build the model (its module, the shared layers in ``torchvision.ops.misc``,
``_make_divisible``), not the pretrained-weight tables or the public builder
functions, which only pass arguments on. torchvision is imported only here,
when the table is generated.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from archdsl.resources import zoo_dir

_MISC = ("torchvision.ops.misc", ("ConvNormActivation", "Conv2dNormActivation"))
_SE = ("torchvision.ops.misc", ("SqueezeExcitation",))
_DIVISIBLE = ("torchvision.models._utils", ("_make_divisible",))
_RESNET = ("torchvision.models.resnet", ("conv3x3", "conv1x1", "BasicBlock", "Bottleneck", "ResNet", "_resnet"))

# zoo file -> the torchvision definitions that build the same model, by module
TORCHVISION_SOURCES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "alexnet": (("torchvision.models.alexnet", ("AlexNet",)),),
    "vgg16_bn": (("torchvision.models.vgg", ("VGG", "make_layers", "cfgs", "_vgg")),),
    "resnet50": (_RESNET,),
    "resnext": (_RESNET,),
    "wide_resnet": (_RESNET,),
    "densenet121": (
        ("torchvision.models.densenet", ("_DenseLayer", "_DenseBlock", "_Transition", "DenseNet", "_densenet")),
    ),
    "googlenet": (("torchvision.models.googlenet", ("GoogLeNet", "Inception", "InceptionAux", "BasicConv2d")),),
    "inception_v3": (
        (
            "torchvision.models.inception",
            (
                "Inception3",
                "InceptionA",
                "InceptionB",
                "InceptionC",
                "InceptionD",
                "InceptionE",
                "InceptionAux",
                "BasicConv2d",
            ),
        ),
    ),
    "vit": (
        ("torchvision.models.vision_transformer", ("MLPBlock", "EncoderBlock", "Encoder", "VisionTransformer")),
        ("torchvision.ops.misc", ("MLP",)),
    ),
    "convnext": (
        ("torchvision.models.convnext", ("LayerNorm2d", "CNBlock", "CNBlockConfig", "ConvNeXt", "_convnext")),
        ("torchvision.ops.misc", ("Permute",)),
        ("torchvision.ops.stochastic_depth", ("stochastic_depth", "StochasticDepth")),
        _MISC,
    ),
    "squeezenet": (("torchvision.models.squeezenet", ("Fire", "SqueezeNet", "_squeezenet")),),
    "shufflenet_v2": (
        ("torchvision.models.shufflenetv2", ("channel_shuffle", "InvertedResidual", "ShuffleNetV2", "_shufflenetv2")),
    ),
    "mobilenet_v2": (("torchvision.models.mobilenetv2", ("InvertedResidual", "MobileNetV2")), _MISC, _DIVISIBLE),
    "mobilenet_v3": (
        (
            "torchvision.models.mobilenetv3",
            ("InvertedResidualConfig", "InvertedResidual", "MobileNetV3", "_mobilenet_v3_conf", "_mobilenet_v3"),
        ),
        _MISC,
        _SE,
        _DIVISIBLE,
    ),
    "efficientnet": (
        (
            "torchvision.models.efficientnet",
            ("_MBConvConfig", "MBConvConfig", "MBConv", "EfficientNet", "_efficientnet_conf", "_efficientnet"),
        ),
        ("torchvision.ops.stochastic_depth", ("stochastic_depth", "StochasticDepth")),
        _MISC,
        _SE,
        _DIVISIBLE,
    ),
    "regnet_y": (
        (
            "torchvision.models.regnet",
            ("SimpleStemIN", "BottleneckTransform", "ResBottleneckBlock", "AnyStage", "BlockParams", "RegNet"),
        ),
        _MISC,
        _SE,
        _DIVISIBLE,
    ),
}


@dataclass(frozen=True)
class LineCount:
    """Code lines of a zoo file, of the zoo libraries it imports, and of torchvision's definitions."""

    name: str
    arch: int
    libraries: int
    torchvision: int


def arch_code_lines(text: str) -> int:
    """Lines of ``.arch`` text that hold code: not blank, not a comment, not inside a docstring."""
    count, in_doc = 0, False
    for line in text.splitlines():
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_doc:
            in_doc = quotes % 2 == 0
            continue
        if stripped.startswith('"""'):
            in_doc = quotes % 2 == 1
            continue
        if stripped and not stripped.startswith("#"):
            count += 1
    return count


def python_code_lines(source: str, names: tuple[str, ...]) -> int:
    """Code lines of the top-level definitions ``names`` in Python ``source``, without docstrings or comments."""
    tree = ast.parse(source)
    lines = source.splitlines()
    wanted = set(names)
    found: set[str] = set()
    count = 0
    for node in tree.body:
        name = _defined_name(node)
        if name not in wanted:
            continue
        found.add(name)
        docs = {line for inner in ast.walk(node) for line in _docstring_lines(inner)}
        for number in range(node.lineno, node.end_lineno + 1):
            text = lines[number - 1].strip()
            if text and not text.startswith("#") and number not in docs:
                count += 1
    missing = wanted - found
    if missing:
        raise LookupError(f"not defined at the top level: {', '.join(sorted(missing))}")
    return count


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _docstring_lines(node: ast.AST) -> range:
    body = getattr(node, "body", None)
    if not isinstance(body, list) or not body or not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
        return range(0)
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return range(first.lineno, first.end_lineno + 1)
    return range(0)


@cache
def _module_source(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"cannot find the source of {module}")
    return Path(spec.origin).read_text(encoding="utf-8")


def count_lines(name: str) -> LineCount:
    """The code lines of zoo file ``name``, of the libraries it imports, and of torchvision's same model."""
    text = (zoo_dir() / f"{name}.arch").read_text(encoding="utf-8")
    libraries = sorted(set(re.findall(r'^(?:import|from) "([^"]+)"', text, flags=re.MULTILINE)))
    library_lines = sum(arch_code_lines((zoo_dir() / path).read_text(encoding="utf-8")) for path in libraries)
    theirs = sum(python_code_lines(_module_source(module), names) for module, names in TORCHVISION_SOURCES[name])
    return LineCount(name, arch_code_lines(text), library_lines, theirs)
