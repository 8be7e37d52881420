"""Small configurations of the zoo's networks for tests that build every one of them.

They keep time and memory low; the equivalence tests (test_zoo_*.py) use the
real configurations. A network not listed takes `size` or `image_size` 64 when
it has such a parameter, and otherwise its defaults.
"""

from __future__ import annotations

import archdsl

SMALL_IMAGE = {"size": 64, "image_size": 64}

# Networks whose declared size or width would make a zoo-wide test slow or large
SMALL = {
    # GPT-2 small's default output is 1024 x 50257 scores per sample
    "gpt": {"vocab_size": 97, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32},
    "transformer_encoder": {"seq_len": 16, "num_layers": 2, "d_model": 64, "nhead": 4, "dim_feedforward": 128},
    "vit": {"image_size": 64, "num_layers": 2},
    # valid convolutions need 188 pixels at least
    "unet": {"size": 188, "base": 8},
    # the trunk needs 75 pixels; the auxiliary classifier 299 (test_zoo_aux.py runs it there)
    "inception_v3": {"size": 75, "aux_logits": False},
}

# The zoo's networks that do not classify images
SEQUENCE_MODELS = ("gpt", "transformer_encoder")


def small_overrides(name: str) -> dict:
    """Parameters that make zoo network ``name`` small: listed above, or a 64-pixel image."""
    if name in SMALL:
        return dict(SMALL[name])
    params = archdsl.graph(name).graph["params"]
    return {key: value for key, value in SMALL_IMAGE.items() if key in params}


def as_cli(overrides: dict) -> list[str]:
    """The same parameters as `-p key=value` options (bools as the language writes them: `true`, `false`)."""
    return [arg for key, value in overrides.items() for arg in ("-p", f"{key}={_literal(value)}")]


def _literal(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
