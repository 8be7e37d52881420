"""The ``archdsl`` command line (Typer + Rich).

Exit codes: 0 ok, 1 an architecture is invalid, 2 a usage error.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from archdsl import api
from archdsl.elaborate import choose_network
from archdsl.errors import ArchError, ArchImportError, ArchNameError, override_span
from archdsl.expr import Scope, evaluate
from archdsl.parse import parse_expression
from archdsl.resources import zoo_aliases, zoo_names

app = typer.Typer(
    name="archdsl",
    help="Write neural network architectures as .arch files; check, inspect and compile them to PyTorch.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Set a network parameter: -p num_classes=10 (repeatable)."),
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Never use colour.")]
DATA_KINDS = ("digits", "synthetic", "imagefolder", "cifar10", "shapes")
MemoryEfficientOption = Annotated[
    bool, typer.Option(help="Dense blocks keep only their inputs for backward: memory linear in depth.")
]


def _consoles(no_color: bool) -> tuple[Console, Console]:
    """stdout and stderr consoles; Rich already drops colour when not on a TTY."""
    kwargs: dict[str, Any] = {"highlight": False}
    if no_color:
        kwargs.update(no_color=True, color_system=None)
    out = Console(**kwargs)
    if not out.is_terminal:  # tables in files and pipes need not wrap at 80 columns
        out = Console(width=160, **kwargs)
    return out, Console(stderr=True, **kwargs)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=[1, 2]"]`` -> ``{"a": 1, "b": (1, 2)}``; values are .arch literals, else strings.

    A value that is a literal but not a valid one (``-p depth=10**100``) is
    reported at ``-p NAME``, and the command exits with status 1.
    """
    overrides: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="-p")
        try:
            value = evaluate(parse_expression(raw.strip(), "<-p>", 1, 1), Scope({}, "a -p value"))
        except RecursionError:
            value = raw.strip()
        except ArchError as error:
            if error.code == "E101" or isinstance(error, ArchNameError):  # not a literal: a string
                value = raw.strip()
            else:  # a literal beyond the limits, a division by zero, ...: reported at the override
                where = override_span(name)
                error = type(error)(error.message, where, error.hint, code=error.code)
                _print_error(error, _consoles(no_color=False)[1])
                raise typer.Exit(1) from None
        overrides[name] = value
    return overrides


def _print_error(err: ArchError, console: Console) -> None:
    console.print(err.render(), markup=False, soft_wrap=True, style="red" if console.is_terminal else None)


def _is_folder(target: str) -> bool:
    """A folder to walk, unless a bare name is a zoo network's or an alias's (``check resnet18`` beside a folder
    of that name)."""
    try:
        is_folder = os.path.isdir(target)
    except (OSError, ValueError):
        return False
    return is_folder and (os.sep in target or "/" in target or target not in {*zoo_names(), *zoo_aliases()})


def _arch_files(folder: str) -> list[str]:
    """The ``.arch`` files under ``folder``, sorted; hidden folders and files (``.venv``, ``.git``) left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        arch = [f for f in files if f.endswith(".arch") and not f.startswith(".")]
        found += [os.path.normpath(os.path.join(root, f)) for f in arch]
    return sorted(found, key=lambda name: name.split(os.sep))


def _expand(targets: list[str]) -> list[tuple[str, bool, ArchError | None]]:
    """Each target as (name, found in a folder, error): a folder gives its ``.arch`` files, as in ruff and black."""
    expanded: list[tuple[str, bool, ArchError | None]] = []
    for target in targets:
        if not _is_folder(target):
            expanded.append((target, False, None))
            continue
        files = _arch_files(target)
        if not files:
            hint = "a folder is searched for .arch files, its subfolders too; hidden ones are left out"
            error = ArchImportError(f"no .arch file in the folder {target}", None, hint, code="E251")
            expanded.append((target, False, error))
        expanded += [(name, True, None) for name in files]
    return expanded


@app.command()
def check(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Files, folders (their .arch files) or zoo names; all of the zoo when omitted."),
    ] = None,
    param: ParamOption = None,
    output_format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
    no_color: NoColor = False,
) -> None:
    """Validate architectures: parse, elaborate and infer every shape; report all errors."""
    out, err = _consoles(no_color)
    if output_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")
    overrides = parse_overrides(param)
    expanded = _expand(targets) if targets else [(name, False, None) for name in zoo_names()]
    names = [name for name, _, _ in expanded]
    failures, report, omitted = 0, [], 0
    for target, in_folder, problem in expanded:
        try:
            if problem is not None:
                raise problem
            g = api.graph(target, params=overrides)
        except ArchError as error:
            if in_folder and [d.code for d in error.diagnostics] == ["E226"]:
                # Only blocks, and they load: a library such as architectures/lib/resnet.arch.
                if output_format == "text":
                    out.print(f"[green]ok[/green] {target}: a library (blocks, no network)")
                continue
            failures += 1
            report.extend({**d.to_dict(), "target": target} for d in error.diagnostics)
            omitted += error.omitted  # past Limits.max_errors: counted, not listed
            if output_format == "text":
                _print_error(error, err)
            continue
        if output_format == "text":
            out.print(
                f"[green]ok[/green] {target}: {g.number_of_nodes()} nodes, "
                f"{g.graph['total_params']:,} parameters, {g.graph['total_macs'] / 1e9:.3f} GMACs"
            )
    if output_format == "json":
        out.print_json(
            json.dumps({"checked": len(names), "failed": failures, "diagnostics": report, "omitted": omitted})
        )
    elif len(names) > 1:
        out.print(f"{len(names) - failures} of {len(names)} valid")
    raise typer.Exit(1 if failures else 0)


@app.command("compile")
def compile_(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    param: ParamOption = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write a checkpoint here.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for weight initialisation.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the test forward pass.")] = 1,
    memory_efficient: MemoryEfficientOption = False,
    fuse: Annotated[bool, typer.Option(help="Fold batch norms into convolutions (for inference).")] = False,
    no_color: NoColor = False,
) -> None:
    """Compile to a torch.fx module, run one forward pass and print its size and output shape."""
    import torch

    from archdsl.compile import is_out_of_memory
    from archdsl.outputs import check_output, input_files
    from archdsl.pipeline import example_inputs

    out, err = _consoles(no_color)
    overrides = parse_overrides(param)
    try:
        built = api.build(target, seed=seed, memory_efficient=memory_efficient, fuse=fuse, params=overrides)
        if output:  # refused before the forward pass, not after it
            check_output(output, input_files(built.graph.graph))
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    g, module = built.graph, built.module
    module.eval()
    try:
        inputs = example_inputs(module.meta["archdsl"], batch)
        with torch.no_grad():
            result = module(*inputs)
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        _print_error(_no_memory_for_forward(g, batch), err)
        raise typer.Exit(1) from None
    results = result if isinstance(result, tuple) else (result,)
    params = sum(p.numel() for p in module.parameters())
    table = Table(title=f"{g.graph['name']} ({target})", show_header=False)
    table.add_row("parameters", f"{params:,}")
    table.add_row("MACs per sample", f"{g.graph['total_macs']:,}")
    for name in g.graph["inputs"]:
        table.add_row(f"input {name}", str(list((batch, *g.nodes[name]["shape"]))))
    for name, value in zip(g.graph["outputs"], results, strict=False):
        table.add_row(f"output {name}", str(list(value.shape)))
    out.print(table)
    if output:
        try:
            api.save_checkpoint(module, output)
        except ArchError as error:
            _print_error(error, err)
            raise typer.Exit(1) from None
        out.print(f"wrote {output}")


def _no_memory_for_forward(g, batch: int) -> ArchError:
    """E328 for the test forward pass: names its largest activation and what it needs at this batch size."""
    from math import prod

    from archdsl.errors import ArchLimitError
    from archdsl.limits import float32_size

    node = max(g.nodes, key=lambda n: prod(g.nodes[n]["shape"]))
    values = batch * prod(g.nodes[node]["shape"])
    shape = [batch, *g.nodes[node]["shape"]]
    return ArchLimitError(
        f"out of memory in the test forward pass: the largest activation, `{node}` {shape}, "
        f"alone needs {float32_size(values)}",
        g.nodes[node]["span"],
        "use a smaller --batch" if batch > 1 else "this machine lacks the memory to run the network",
        code="E328",
        sources=g.graph.get("sources"),
    )


@app.command()
def render(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output file: .svg, .png, .pdf or .dot.")],
    param: ParamOption = None,
    level: Annotated[str, typer.Option(help="stage, block (identical repeats folded) or layer.")] = "block",
    expand: Annotated[
        list[str] | None, typer.Option("--expand", "-e", help="Open this stage or block (repeatable).")
    ] = None,
    rankdir: Annotated[str, typer.Option(help="TB (top to bottom) or LR (left to right).")] = "TB",
    clusters: Annotated[bool, typer.Option(help="Draw boxes around stages and blocks.")] = True,
    legend: Annotated[bool, typer.Option(help="Draw the legend of edge kinds.")] = True,
    no_color: NoColor = False,
) -> None:
    """Draw the connection diagram of a network."""
    from archdsl.render import LEVELS
    from archdsl.render import render as draw

    out, err = _consoles(no_color)
    if level not in LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LEVELS)}", param_hint="--level")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise typer.BadParameter("use TB, LR, BT or RL", param_hint="--rankdir")
    overrides = parse_overrides(param)
    try:
        g = api.graph(target, params=overrides)
        unknown = [name for name in expand or () if not _is_group(g, name)]
        if unknown:
            raise typer.BadParameter(f"no stage or block `{unknown[0]}` in {target}", param_hint="--expand")
        draw(g, output, level=level, expand=tuple(expand or ()), rankdir=rankdir, clusters=clusters, legend=legend)
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    out.print(f"wrote {output}")


def _is_group(g, name: str) -> bool:
    return any(group.path == name for _, data in g.nodes(data=True) for group in data["groups"])


@app.command()
def summary(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    param: ParamOption = None,
    depth: Annotated[int, typer.Option(min=1, max=3, help="1 stages, 2 blocks (x N runs folded), 3 layers.")] = 3,
    no_color: NoColor = False,
) -> None:
    """Print a table of every layer: output shape, parameters, MACs, activation memory; stage subtotals."""
    from archdsl.summary import human_bytes, summarize

    out, err = _consoles(no_color)
    try:
        g = api.graph(target, params=parse_overrides(param))
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    table = Table(title=api.title_of(g), title_justify="left")
    for column in ("module path", "op", "output shape"):
        table.add_column(column)
    for column in ("parameters", "MACs", "activations"):
        table.add_column(column, justify="right")
    for row in summarize(g, ("stage", "block", "layer")[depth - 1]):
        style = {"subtotal": "dim", "total": "bold"}.get(row.kind)
        shape = "×".join(map(str, row.shape)) if row.shape else ""
        table.add_row(
            row.path, row.op, shape, f"{row.params:,}", f"{row.macs:,}", human_bytes(row.activation_bytes), style=style
        )
        if row.kind == "subtotal":
            table.add_section()
    out.print(table)
    out.print("activations: float32 outputs of every layer for one input, as kept for the backward pass")


@app.command()
def fmt(
    files: Annotated[list[str], typer.Argument(help=".arch files, or folders of them, to format in place.")],
    check: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 if a file would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print the changes instead of writing them.")] = False,
    no_color: NoColor = False,
) -> None:
    """Format .arch files canonically, keeping every comment; never changes what a file means."""
    import difflib
    from pathlib import Path

    from archdsl.fmt import format_source
    from archdsl.loader import read_source_bytes

    out, err = _consoles(no_color)
    changed, failed = [], False
    expanded = _expand(files)
    for name, _, problem in expanded:
        path = Path(name)
        try:
            if problem is not None:
                raise problem
            data = read_source_bytes(path)  # a regular file of at most Limits.max_file_bytes
        except ArchError as error:
            _print_error(error, err)
            failed = True
            continue
        try:
            text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines
            formatted = format_source(text, name)
        except UnicodeDecodeError as error:
            err.print(f"error: cannot read {name}: {error}", markup=False)
            failed = True
            continue
        except ArchError as error:
            _print_error(error.with_sources({name: text}), err)
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(name)
        if diff:
            lines = difflib.unified_diff(
                text.splitlines(keepends=True), formatted.splitlines(keepends=True), name, f"{name} (formatted)"
            )
            sys.stdout.write("".join(lines))
        elif not check:
            try:
                _replace_text(path, formatted)
            except OSError as error:
                err.print(f"error: cannot write {name}: {error.strerror or error}", markup=False, soft_wrap=True)
                failed = True
                changed.pop()
    verb = "would reformat" if (check or diff) else "reformatted"
    for name in changed:
        out.print(f"{verb} {name}")
    if not changed and not failed:
        out.print(f"{len(expanded)} file(s) already formatted")
    raise typer.Exit(1 if failed or (check and changed) else 0)


def _replace_text(path, text: str) -> None:
    """Write ``text`` over the file ``path`` (through a link, onto its target) atomically, keeping its mode.

    A temporary file beside it is renamed onto it, so a reader (another
    ``fmt``, an editor) sees the old file or the new one, never half of one;
    on any error the temporary file is removed and the file left as it was.
    """
    from archdsl.outputs import replacing

    with replacing(os.path.realpath(path)) as stream:
        stream.write(text.encode("utf-8"))


@app.command("graph")
def graph_(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output file (.json or .graphml); stdout if omitted.")
    ] = "",
    output_format: Annotated[str, typer.Option("--format", help="json (node-link) or graphml")] = "",
    param: ParamOption = None,
    no_color: NoColor = False,
) -> None:
    """Dump the validated graph as JSON (node-link) or GraphML, for other tools."""
    from archdsl.interchange import to_graphml, to_node_link
    from archdsl.outputs import input_files, write_bytes

    out, err = _consoles(no_color)
    fmt = output_format or ("graphml" if output.endswith(".graphml") else "json")
    if fmt not in ("json", "graphml"):
        raise typer.BadParameter("use json or graphml", param_hint="--format")
    try:
        g = api.graph(target, params=parse_overrides(param))
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    text = to_graphml(g) if fmt == "graphml" else json.dumps(to_node_link(g), indent=1)
    if output:
        try:
            write_bytes(output, text.encode("utf-8"), input_files(g.graph))
        except ArchError as error:
            _print_error(error, err)
            raise typer.Exit(1) from None
        except OSError as error:
            err.print(f"error: cannot write {output}: {error.strerror or error}", markup=False)
            raise typer.Exit(1) from None
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@app.command("export")
def export_(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    output: Annotated[str, typer.Option("--output", "-o", help="The file to write.")],
    export_format: Annotated[str, typer.Option("--format", help="torchscript, pt2 or onnx")] = "torchscript",
    param: ParamOption = None,
    no_color: NoColor = False,
) -> None:
    """Export the compiled network: TorchScript, a torch.export program (pt2) or ONNX."""
    from archdsl.export import export

    out, err = _consoles(no_color)
    try:
        path = export(target, output, export_format, params=parse_overrides(param))
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    out.print(f"wrote {path}")


DATA_PANEL, OPTIMISATION_PANEL, DEVICE_PANEL, RUN_PANEL = "Data", "Optimisation", "Device and memory", "Run folder"


@app.command("train")
def train_(
    target: Annotated[str, typer.Argument(help="A file or a zoo name.")],
    param: ParamOption = None,
    data: Annotated[
        str,
        typer.Option(
            help="To classify: digits (default), synthetic, imagefolder:PATH or cifar10:PATH. To segment: shapes "
            "(default), generated images and masks of classes 0 background, 1 disc, 2 rectangle, 3 triangle.",
            show_default=False,
            rich_help_panel=DATA_PANEL,
        ),
    ] = "",
    task: Annotated[
        str,
        typer.Option(
            help="classify or segment (default: from the network's output, [K] or [K, H, W]).",
            show_default=False,
            rich_help_panel=DATA_PANEL,
        ),
    ] = "auto",
    synthetic_size: Annotated[
        int, typer.Option(min=1, help="Training examples of synthetic and shapes data.", rich_help_panel=DATA_PANEL)
    ] = 512,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=DATA_PANEL)] = 64,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Epochs in all (default 10); with --resume, more than the checkpoint's extends the run.",
            show_default=False,
            rich_help_panel=OPTIMISATION_PANEL,
        ),
    ] = None,
    optimizer: Annotated[
        str, typer.Option(help="sgd (momentum 0.9) or adamw", rich_help_panel=OPTIMISATION_PANEL)
    ] = "sgd",
    lr: Annotated[
        float | None, typer.Option(help="default 0.1 (sgd) or 0.001 (adamw)", rich_help_panel=OPTIMISATION_PANEL)
    ] = None,
    schedule: Annotated[str, typer.Option(help="cosine, step or none", rich_help_panel=OPTIMISATION_PANEL)] = "cosine",
    warmup: Annotated[
        int, typer.Option(min=0, help="Epochs at a tenth of the rate first.", rich_help_panel=OPTIMISATION_PANEL)
    ] = 0,
    weight_decay: Annotated[float, typer.Option(rich_help_panel=OPTIMISATION_PANEL)] = 5e-4,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=1.0, rich_help_panel=OPTIMISATION_PANEL)] = 0.0,
    seed: Annotated[int, typer.Option(rich_help_panel=OPTIMISATION_PANEL)] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda", rich_help_panel=DEVICE_PANEL)] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA", rich_help_panel=DEVICE_PANEL)] = True,
    channels_last: Annotated[
        bool, typer.Option(help="channels-last memory format on CUDA", rich_help_panel=DEVICE_PANEL)
    ] = False,
    memory_efficient: Annotated[
        bool,
        typer.Option(help="Dense blocks keep only their inputs for backward.", rich_help_panel=DEVICE_PANEL),
    ] = False,
    out: Annotated[
        str,
        typer.Option(help="Run folder for checkpoint, metrics, curves (default runs/NAME).", rich_help_panel=RUN_PANEL),
    ] = "",
    resume: Annotated[str, typer.Option(help="Continue from this checkpoint.", rich_help_panel=RUN_PANEL)] = "",
    trust_modified: Annotated[
        bool,
        typer.Option(
            "--trust-modified", help="Resume even if the checkpoint fails its hash check.", rich_help_panel=RUN_PANEL
        ),
    ] = False,
    no_color: NoColor = False,
) -> None:
    """Train a network: progress per epoch, metrics, a plot and a resumable checkpoint in the run folder.

    Ctrl-C stops it and prints the command that resumes it (exit status 130).
    """
    import shlex

    from archdsl.train import TrainConfig, TrainingInterrupted, train
    from archdsl.train.progress import RichReporter

    console, err = _consoles(no_color)
    for value, allowed, hint in (
        (device, ("auto", "cpu", "cuda"), "--device"),
        (optimizer, ("sgd", "adamw"), "--optimizer"),
        (schedule, ("cosine", "step", "none"), "--schedule"),
        (task, ("auto", "classify", "segment"), "--task"),
        *([(data.partition(":")[0], DATA_KINDS, "--data")] if data else []),
    ):
        if value not in allowed:
            raise typer.BadParameter(f"`{value}`: use {', '.join(allowed)}", param_hint=hint)
    config = TrainConfig(
        arch=target,
        overrides=parse_overrides(param),
        data=data,
        task=task,
        synthetic_size=synthetic_size,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        warmup=warmup,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        memory_efficient=memory_efficient,
        out=out,
        resume=resume,
        trust_modified=trust_modified,
    )
    reporter = RichReporter(console)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    try:
        result = train(config, reporter=reporter)
    except ArchError as error:
        reporter.close()
        _print_error(error, err)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as stop:
        reporter.close()
        checkpoint = getattr(stop, "checkpoint", None) if isinstance(stop, TrainingInterrupted) else None
        if main_rank and checkpoint is not None:
            command = shlex.join(["archdsl", "train", target, "--resume", str(checkpoint)])
            err.print(f"interrupted; to continue this run: {command}", markup=False, soft_wrap=True)
        elif main_rank:
            err.print("interrupted before the first epoch ended; nothing to resume", markup=False)
        raise typer.Exit(130) from None
    if result.history and main_rank:
        final = result.history[-1]
        if "test_miou" in final:
            scores = f"test pixel accuracy {final['test_acc']:.2%}, mean IoU {final['test_miou']:.2%}"
        else:
            scores = f"test accuracy {final['test_acc']:.2%}"
        console.print(f"{scores}; run folder {result.out}")


@app.command("eval")
def eval_(
    target: Annotated[str, typer.Argument(help="The network the checkpoint must hold (a file or zoo name).")],
    checkpoint: Annotated[str, typer.Option(help="A checkpoint from `archdsl train` or `compile -o`.")],
    data: Annotated[
        str,
        typer.Option(
            help="digits, synthetic, imagefolder:PATH, cifar10:PATH or shapes; by default digits to classify, "
            "shapes to segment"
        ),
    ] = "",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    trust_modified: Annotated[
        bool, typer.Option("--trust-modified", help="Read the checkpoint even if it fails its hash check.")
    ] = False,
    no_color: NoColor = False,
) -> None:
    """Report the accuracy (pixel accuracy and mean IoU for a segmenting network) and loss of a checkpoint."""
    from archdsl.train import evaluate

    console, err = _consoles(no_color)
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter("use auto, cpu or cuda", param_hint="--device")
    try:
        expected = choose_network(api.load_source(target), None).name  # parsed only: the name needs no shapes
        result = evaluate(checkpoint, data, device=device, network=expected, verify=not trust_modified)
    except ArchError as error:
        _print_error(error, err)
        raise typer.Exit(1) from None
    if result["note"]:
        console.print(f"note: {result['note']}", markup=False)
    if "test_miou" in result:
        scores = f"test pixel accuracy {result['test_acc']:.2%}, mean IoU {result['test_miou']:.2%}"
    else:
        scores = f"test accuracy {result['test_acc']:.2%}"
    console.print(f"{result['data']}: {scores}, loss {result['test_loss']:.4f} ({result['samples']} samples)")


@app.command("list")
def list_(no_color: NoColor = False) -> None:
    """List the zoo's networks with their parameters and MACs, then the builder names that stand for one of them."""
    out, err = _consoles(no_color)
    table = Table("name", "description", "parameters", "GMACs")
    failed = False
    aliases = zoo_aliases()
    for name in [*zoo_names(), *aliases]:
        try:
            g = api.graph(name)
        except ArchError as error:
            _print_error(error, err)
            failed = True
            continue
        if name == next(iter(aliases), None):
            table.add_section()
        description = f"= {aliases[name].command()}" if name in aliases else api.title_of(g)
        table.add_row(name, description, f"{g.graph['total_params']:,}", f"{g.graph['total_macs'] / 1e9:.3f}")
    out.print(table)
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
