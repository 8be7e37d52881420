"""ViT, ConvNeXt, the Transformer encoder and GPT are their references', exactly (as tests/equivalence.py means it).

- ``vit`` and ``convnext`` against torchvision's ``VisionTransformer`` and
  ``convnext_*``: every builder name's parameter count, and its state_dict
  keys, shapes and order plus the settings a state_dict does not show (norm
  eps, dropout, attention heads, stochastic depth rates), both models built on
  the meta device (no weights, no memory); eval outputs and one training
  step's gradients at small configurations (ViT) and at full depth on small
  images (ConvNeXt-T), with dropout and stochastic depth drawing the same
  masks; one eval forward pass at the declared size for ViT-B/16 and
  ConvNeXt-B.
- ``transformer_encoder`` against ``nn.TransformerEncoder`` (post- and
  pre-norm, small and the issue's configuration), ``gpt`` against the
  hand-written tests/gpt_reference.py: state_dict, outputs, gradients; GPT's
  tied head (one tensor, counted once) and its causality.
- ``torch.compile(fullgraph=True)``, ``torch.export`` and ONNX (through
  onnxruntime) give the eager outputs.

The references initialise some parameters to zero or to 1e-6 (ViT's class
token and classifier, ConvNeXt's layer scales), which would hide most of the
network from the comparison: they get random values first, as the norms do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import (
    assert_close_in_chunks,
    assert_same_eval_output,
    assert_same_eval_output_with_random_norms,
    assert_same_training_step,
    count_dropped_samples,
    randomize_norms,
    shapes,
)
from gpt_reference import GPT
from torch import nn

import archdsl
from archdsl.resources import zoo_aliases

# builder name (an alias of vit.arch or convnext.arch) -> parameters of torchvision 0.29.1's model
# (REFERENCE.md lists vit_b_16, vit_l_16, convnext_tiny and convnext_base; the others were measured the same way,
# and test_parameter_count_is_torchvisions checks each against torchvision's model built on the meta device)
BUILDERS = {
    "vit_b_16": 86_567_656,
    "vit_b_32": 88_224_232,
    "vit_l_16": 304_326_632,
    "vit_l_32": 306_535_400,
    "vit_h_14": 632_045_800,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
}
VIT_ALIASES = {  # torchvision's vit_* builders: patch size, depth, heads, width, MLP size
    "vit_b_16": (16, 12, 12, 768, 3072),
    "vit_b_32": (32, 12, 12, 768, 3072),
    "vit_l_16": (16, 24, 16, 1024, 4096),
    "vit_l_32": (32, 24, 16, 1024, 4096),
    "vit_h_14": (14, 32, 16, 1280, 5120),
}
GPT2_SMALL = 124_439_808  # GPT-2 small with the head tied to the token embedding (the reference's docstring)
# one eval forward pass at the declared size, batch 1 (about 350 MB of weights each, held once)
FORWARD = ["vit_b_16", "convnext_base"]
# the parameters the references initialise to zero (class token, classifier) or to 1e-6 (layer scale)
ZERO_INITIALISED = ("class_token", "heads.head.weight", "layer_scale")

VIT_SMALL = {"image_size": 32, "num_layers": 2, "hidden_dim": 64, "mlp_dim": 128, "num_classes": 10}
VIT_CONFIGS = {"B16-like": {"patch_size": 16, "num_heads": 2}, "B8-like": {"patch_size": 8, "num_heads": 4}}
VIT_DROPOUTS = {"dropout": 0.1, "attention_dropout": 0.2}
ENCODER_CONFIGS = {
    "small": {"d_model": 32, "nhead": 4, "dim_feedforward": 64, "num_layers": 2},
    "issue": {"d_model": 512, "nhead": 8, "dim_feedforward": 2048, "num_layers": 6},
}
SEQ_LEN = 6
GPT_SMALL = {"vocab_size": 97, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 32}


def randomize_zero_initialised(model: nn.Module, seed: int) -> None:
    """Random values in the parameters of ``ZERO_INITIALISED``: the class token, the classifier, the layer scales."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(ZERO_INITIALISED):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


# ------------------------------------------------------- every builder name


@cache
def on_meta(name: str) -> tuple[nn.Module, nn.Module]:
    """Ours and torchvision's model for a builder name, without allocating or initialising a weight (built once)."""
    with torch.device("meta"):
        return archdsl.load(name), getattr(torchvision.models, name)()


@pytest.mark.parametrize("name", BUILDERS)
def test_parameter_count_is_torchvisions(name):
    assert archdsl.graph(name).graph["total_params"] == BUILDERS[name]
    ours, reference = on_meta(name)
    assert sum(p.numel() for p in reference.parameters()) == BUILDERS[name], "the table is stale"
    assert sum(p.numel() for p in ours.parameters()) == BUILDERS[name]


@pytest.mark.parametrize("name", BUILDERS)
def test_state_dict_keys_shapes_and_order_are_torchvisions(name):
    ours, reference = on_meta(name)
    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)


def settings(model: nn.Module) -> dict[str, list]:
    """What a state_dict does not show: norm eps, dropout rates, attention heads and dropout, stochastic depth."""
    found: dict[str, list] = {"norms": [], "dropouts": [], "attention": [], "stochastic depth": []}
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            found["norms"].append((name, module.normalized_shape, module.eps))
        elif isinstance(module, nn.Dropout):
            found["dropouts"].append((name, module.p))
        elif isinstance(module, nn.MultiheadAttention):
            found["attention"].append((name, module.num_heads, module.dropout, module.batch_first))
        elif isinstance(module, torchvision.ops.StochasticDepth) or type(module).__name__ == "DropPath":
            found["stochastic depth"].append((name, module.p))
    return found


@pytest.mark.parametrize("name", ["vit_b_16", "vit_h_14", "convnext_tiny", "convnext_large"])
def test_settings_outside_the_state_dict_are_torchvisions(name):
    """LayerNorm eps (1e-6 in both), every block's stochastic depth rate (0 to 0.1 in tiny, 0 to 0.5 in large)."""
    ours, reference = on_meta(name)
    assert settings(ours) == settings(reference)


def test_dropouts_are_torchvisions():
    with torch.device("meta"):
        reference = torchvision.models.VisionTransformer(**VIT_SMALL, **VIT_CONFIGS["B8-like"], **VIT_DROPOUTS)
        ours = archdsl.load("vit", **VIT_SMALL, **VIT_CONFIGS["B8-like"], **VIT_DROPOUTS)
    assert settings(ours) == settings(reference)
    assert {p for _, p in settings(ours)["dropouts"]} == {0.1}


def test_every_builder_is_an_alias_of_one_file_with_its_parameters():
    for name, (patch_size, num_layers, num_heads, hidden_dim, mlp_dim) in VIT_ALIASES.items():
        alias = zoo_aliases()[name]
        assert alias.file == "vit"
        assert dict(alias.params) == {
            "patch_size": patch_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "hidden_dim": hidden_dim,
            "mlp_dim": mlp_dim,
        }
    for name in BUILDERS.keys() - VIT_ALIASES.keys():
        alias = zoo_aliases()[name]
        assert alias.file == "convnext" and dict(alias.params) == {"variant": name.rsplit("_", 1)[1]}
    assert archdsl.graph("vit").graph["total_params"] == BUILDERS["vit_b_16"]
    assert archdsl.graph("convnext", variant="base").graph["total_params"] == BUILDERS["convnext_base"]
    with pytest.raises(archdsl.ArchError, match=r'"huge" is not one of \["tiny", "small"'):
        archdsl.graph("convnext", variant="huge")


def test_gpt2_small_is_the_references_size():
    assert archdsl.graph("gpt").graph["total_params"] == GPT2_SMALL
    with torch.device("meta"):
        ours, reference = archdsl.load("gpt"), GPT()
    assert sum(p.numel() for p in reference.parameters()) == GPT2_SMALL, "the reference changed"
    assert sum(p.numel() for p in ours.parameters()) == GPT2_SMALL
    assert shapes(ours) == shapes(reference)


def test_transformer_encoder_default_is_the_issues_size():
    """d_model 512, 8 heads, feed-forward 2048, 6 layers: as PyTorch builds it."""
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
        reference = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    expected = sum(p.numel() for p in reference.parameters())
    assert archdsl.graph("transformer_encoder").graph["total_params"] == expected == 18_914_304


@pytest.mark.parametrize("name", FORWARD)
def test_the_largest_give_torchvisions_output_at_the_declared_size(name):
    """224x224, batch 1. Ours is built on the meta device and takes the reference's tensors (``assign``)."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    randomize_norms(reference, seed=4)
    randomize_zero_initialised(reference, seed=6)
    with torch.device("meta"):
        ours = archdsl.load(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert_same_eval_output(ours, reference, (1, 3, 224, 224))
    del ours, reference
    release_memory()


# ------------------------------------------------------- ViT at small configurations


@pytest.fixture(scope="module", params=VIT_CONFIGS)
def vit_pair(request):
    """archdsl's vit and torchvision's VisionTransformer, 32x32 images, 2 layers, width 64, with dropout."""
    config = {**VIT_SMALL, **VIT_CONFIGS[request.param], **VIT_DROPOUTS}
    torch.manual_seed(0)
    reference = torchvision.models.VisionTransformer(**config)
    randomize_zero_initialised(reference, seed=6)
    yield archdsl.load("vit", seed=0, **config), reference
    release_memory()


def test_vit_state_dict_is_torchvisions(vit_pair):
    ours, reference = vit_pair
    assert shapes(ours) == shapes(reference)


def test_vit_eval_outputs_match(vit_pair):
    assert_same_eval_output_with_random_norms(*vit_pair, (2, 3, 32, 32))


def test_vit_training_step_has_the_same_gradients_under_dropout(vit_pair):
    assert_same_training_step(*vit_pair, (2, 3, 32, 32))


# ------------------------------------------------------- ConvNeXt-T, full depth, small images


def test_convnext_tiny_is_torchvisions_in_eval_and_in_a_training_step_under_stochastic_depth():
    """ConvNeXt-T (28.6 M parameters) on 32x32 images; stochastic depth at its default rates (0 to 0.1).

    One test rather than a module-scoped pair: the pair (460 MB with gradients) would live until the
    file's last test."""
    torch.manual_seed(0)
    reference = torchvision.models.convnext_tiny()
    randomize_zero_initialised(reference, seed=6)
    ours = archdsl.load("convnext_tiny", seed=0, size=32)
    assert_same_eval_output_with_random_norms(ours, reference, (2, 3, 32, 32))
    dropped = count_dropped_samples(reference)
    assert_same_training_step(ours, reference, (2, 3, 32, 32))
    assert sum(dropped) > 0, "no residual branch was dropped: the step would not compare the masks"
    del ours, reference
    release_memory()


# ------------------------------------------------------- the Transformer encoder


def encoder_pair(config: dict, norm_first: bool) -> tuple[nn.Module, nn.Module]:
    """archdsl's transformer_encoder and PyTorch's, dropout 0.1, on sequences of ``SEQ_LEN`` tokens."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        config["d_model"],
        config["nhead"],
        config["dim_feedforward"],
        dropout=0.1,
        batch_first=True,
        norm_first=norm_first,
    )
    reference = nn.TransformerEncoder(layer, config["num_layers"], enable_nested_tensor=False)
    ours = archdsl.load("transformer_encoder", seed=0, seq_len=SEQ_LEN, norm_first=norm_first, dropout=0.1, **config)
    return ours, reference


def projection_loss(shape: tuple[int, ...]):
    """A loss on a whole output sequence: its dot product with a fixed random tensor (every value gets a gradient)."""
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    return lambda output: (output * weights).sum()


@pytest.mark.parametrize("config", ENCODER_CONFIGS)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_transformer_encoder_is_pytorchs(config, norm_first):
    """Keys (``layers.N.self_attn.in_proj_weight``, ``linear1``, ``norm1``...), outputs (PyTorch's eval fast path),
    and one training step's gradients with dropout drawing the same masks in attention and after each sublayer."""
    ours, reference = encoder_pair(ENCODER_CONFIGS[config], norm_first)
    assert shapes(ours) == shapes(reference)
    d_model = ENCODER_CONFIGS[config]["d_model"]
    assert_same_eval_output_with_random_norms(ours, reference, (2, SEQ_LEN, d_model))
    assert_same_training_step(ours, reference, (2, SEQ_LEN, d_model), loss=projection_loss((SEQ_LEN, d_model)))


# ------------------------------------------------------- GPT


def tokens(batch: int, seed: int) -> torch.Tensor:
    return torch.randint(
        GPT_SMALL["vocab_size"], (batch, GPT_SMALL["block_size"]), generator=torch.Generator().manual_seed(seed)
    )


def next_token_loss(idx: torch.Tensor):
    """A language model's loss: cross-entropy of each position's scores against the next token."""
    return lambda logits: nn.functional.cross_entropy(logits.flatten(0, 1), idx.roll(-1, dims=1).flatten())


@pytest.fixture(scope="module")
def gpt_pair():
    """archdsl's gpt and tests/gpt_reference.GPT: 2 layers, 4 heads, width 32, 16 tokens, dropout 0.1."""
    torch.manual_seed(0)
    reference = GPT(**GPT_SMALL, dropout=0.1)
    yield archdsl.load("gpt", seed=0, **GPT_SMALL, dropout=0.1), reference
    release_memory()


def test_gpt_state_dict_and_tied_head_are_the_references(gpt_pair):
    ours, reference = gpt_pair
    assert shapes(ours) == shapes(reference)
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in reference.named_parameters()]
    unique = sum(p.numel() for p in ours.parameters())
    assert archdsl.graph("gpt", **GPT_SMALL).graph["total_params"] == unique
    assert unique == sum(p.numel() for p in reference.parameters())


def test_gpt_eval_outputs_match(gpt_pair):
    ours, reference = gpt_pair
    assert_same_eval_output_with_random_norms(ours, reference, tokens(2, seed=1))
    assert ours.lm_head.weight is ours.transformer.wte.weight, "loading the state_dict untied the head"


def test_gpt_training_step_has_the_same_gradients_under_dropout(gpt_pair):
    """The tied weight's gradient sums the embedding's and the head's, in both."""
    idx = tokens(2, seed=2)
    assert_same_training_step(*gpt_pair, idx, loss=next_token_loss(idx))


def test_gpt_is_causal(gpt_pair):
    """Changing token t changes no output before t, and changes the output at t."""
    ours, _ = gpt_pair
    ours.eval()
    positions = [0, 5, GPT_SMALL["block_size"] - 1]
    batch = tokens(1, seed=3).repeat(1 + len(positions), 1)  # row 0 as drawn, row 1 + i with token positions[i] changed
    for row, t in enumerate(positions, start=1):
        batch[row, t] = (batch[0, t] + 1) % GPT_SMALL["vocab_size"]
    with torch.no_grad():
        outputs = ours(batch)
    expected, scale = outputs[0], outputs[0].abs().max().item()
    for row, t in enumerate(positions, start=1):
        torch.testing.assert_close(outputs[row, :t], expected[:t], rtol=0, atol=1e-6 * scale)
        assert (outputs[row, t] - expected[t]).abs().max() > 1e-2 * scale, f"changing token {t} left its output"


# ------------------------------------------------------- torch.compile, torch.export, ONNX


def small_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A small seeded vit or gpt (no dropout) and an input batch of 2."""
    if name == "vit":
        image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
        return archdsl.load("vit", seed=0, **VIT_SMALL, **VIT_CONFIGS["B8-like"]), image
    return archdsl.load("gpt", seed=0, **GPT_SMALL), tokens(2, seed=4)


@pytest.mark.parametrize("name", ["vit", "gpt"])
def test_torch_compile_fullgraph_gives_the_eager_outputs_and_gradients(name):
    """``backend="aot_eager"``: Dynamo captures one graph and AOTAutograd traces forward and backward,
    without Inductor's C++ code generation (minutes on 2 cores)."""
    module, x = small_model(name)
    module.eval()
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().mean().backward()
    grads = {key: param.grad.clone() for key, param in module.named_parameters()}
    module.zero_grad()
    expected = module(x)
    expected.square().mean().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    for key, param in module.named_parameters():
        assert_close_in_chunks(grads[key], param.grad, key)
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["vit", "gpt"])
def test_torch_export_gives_the_eager_outputs(name):
    module, x = small_model(name)
    module.eval()
    program = torch.export.export(module, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), module(x), rtol=1e-5, atol=1e-6)


def test_vit_onnx_export_matches_onnxruntime(tmp_path):
    """archdsl's own ONNX export, with a dynamic batch (exported at batch 1, run at batch 2)."""
    import onnxruntime as ort  # the onnx extra, which CI installs: a missing package fails, as in test_export.py

    from archdsl.export import export

    module, x = small_model("vit")
    path = export(module, tmp_path / "vit.onnx", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    (result,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = module.eval()(x)
    assert (torch.from_numpy(result) - expected).abs().max() <= 1e-4 * expected.abs().max()


# ------------------------------------------------------- the command line


def test_archdsl_list_shows_the_new_networks_and_builder_names():
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},  # wide enough that no name or count wraps
    )
    assert result.returncode == 0, result.stderr
    for name in ["vit", "convnext", "transformer_encoder", "gpt", *BUILDERS]:
        assert f" {name} " in result.stdout, name
    for count in [*BUILDERS.values(), GPT2_SMALL]:
        assert f"{count:,}" in result.stdout
