"""Segmentation as a task of `archdsl train`: the task from the output shape, the generated shapes, pixel
accuracy and mean IoU, mismatches that say what fixes them, and resuming across the task field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import archdsl
from archdsl.checkpoint import seal
from archdsl.train import ArchDataError, TrainConfig, history_figure, load_data, train
from archdsl.train.loop import check_fit, evaluate, evaluate_segmentation
from archdsl.train.shapes import SHAPE_CLASSES, draw_shapes
from archdsl.train.tasks import confusion_matrix, mean_iou, output_task, pixel_accuracy

# A fully convolutional network: one logit map per class at the input's size. Dilated convolutions see 17
# pixels around each one, enough to tell a disc from a rectangle; nothing here shrinks the image.
FCN = """\
network fcn(num_classes = 4, width = 8, size = 16) {
    input image: [1, size, size]
    c1: conv(width, k=3, pad=1) -> batchnorm -> relu
    c2: conv(width, k=3, pad=2, dilation=2) -> batchnorm -> relu
    c3: conv(width, k=3, pad=4, dilation=4) -> batchnorm -> relu
    c4: conv(width, k=3, pad=1) -> batchnorm -> relu
    out: conv(num_classes, k=1)
}
"""

CLASSIFIER = """\
network classifier(num_classes = 10) {
    input image: [1, 16, 16]
    c: conv(4, k=3, pad=1) -> relu -> adaptive_avgpool(1) -> flatten
    out: linear(num_classes)
}
"""


def tiny(tmp_path, **changes) -> TrainConfig:
    """The FCN on 64 shapes of 16x16: an epoch takes a fraction of a second."""
    config = TrainConfig(
        arch=FCN,
        epochs=2,
        batch_size=16,
        optimizer="adamw",
        lr=0.01,
        out=str(tmp_path / "run"),
        device="cpu",
        synthetic_size=64,
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


# ----------------------------------------------------------------------------------------------- the task


def test_the_task_comes_from_the_output_shape():
    assert output_task((10,), (3, 32, 32)) == "classify"
    assert output_task((10,), (64,)) == "classify"
    assert output_task((4, 32, 32), (1, 32, 32)) == "segment"
    assert output_task((2, 20, 24), (1, 32, 32)) == "segment"  # a U-Net of valid convolutions: the centre
    assert output_task((4, 40, 32), (1, 32, 32)) is None  # larger than the input
    assert output_task((4, 32), (1, 32, 32)) is None
    assert output_task((4, 8, 8), (64,)) is None  # no image to segment
    assert check_fit(archdsl.graph(FCN), None, "") == "segment"
    assert check_fit(archdsl.graph(CLASSIFIER), None, "") == "classify"
    assert check_fit(archdsl.graph(FCN), None, "shapes", "segment") == "segment"


# Each: the network, overrides, data, --task; then the message and the hint of the E805.
MISMATCHES = [
    pytest.param(
        FCN,
        {},
        "digits",
        "auto",
        "`digits` has one label per image (classification), but the network outputs [4, 16, 16], one map per "
        "class: it segments",
        "use --data shapes (generated shapes and their masks)",
        id="segmenter_on_digits",
    ),
    pytest.param(
        CLASSIFIER,
        {},
        "shapes",
        "auto",
        "`shapes` has one label per pixel (segmentation), but the network outputs [10], one score per class: it "
        "classifies",
        "use --data digits, synthetic, imagefolder:PATH or cifar10:PATH",
        id="classifier_on_shapes",
    ),
    pytest.param(
        FCN,
        {"num_classes": 3},
        "shapes",
        "auto",
        "the network outputs [3, 16, 16] but `shapes` has 4 classes per pixel",
        "add `-p num_classes=4`",
        id="classes",
    ),
    pytest.param(
        FCN,
        {},
        "",
        "classify",
        "`--task classify` needs one score per class ([K]), but the network outputs [4, 16, 16], one map per class",
        "leave --task out to segment (the network's output says so)",
        id="task_classify_for_a_segmenter",
    ),
    pytest.param(
        CLASSIFIER,
        {},
        "",
        "segment",
        "`--task segment` needs one logit map per class at the input's 16x16 ([K, 16, 16]), but the network "
        "outputs [10], one score per class",
        "leave --task out to classify (the network's output says so)",
        id="task_segment_for_a_classifier",
    ),
    pytest.param(
        FCN.replace("out: conv(num_classes, k=1)", "out: conv(num_classes, k=1) -> pad(2)"),
        {},
        "shapes",
        "auto",
        "segmenting `shapes` needs one logit map per class at the input's 16x16 ([4, 16, 16]), but the network "
        "outputs [4, 20, 20], one map per class",
        "end the network in conv(K, k=1) on a feature map of the input's size",
        id="map_larger_than_the_input",
    ),
]


@pytest.mark.parametrize(("arch", "overrides", "data", "task", "message", "hint"), MISMATCHES)
def test_a_mismatch_is_an_e805_at_the_output_before_any_data_is_read(
    tmp_path, monkeypatch, arch, overrides, data, task, message, hint
):
    from archdsl.train import loop

    monkeypatch.setattr(loop, "load_data", lambda *args, **kwargs: pytest.fail("data read before the check"))
    with pytest.raises(ArchDataError) as info:
        train(TrainConfig(arch=arch, overrides=overrides, data=data, task=task, out=str(tmp_path / "run")))
    error = info.value
    assert (error.code, error.message, error.hint) == ("E805", message, hint)
    assert error.span.line == (7 if arch.startswith("network fcn") else 4)  # the output's line
    assert "the input `image`" in error.diagnostics[0].labels[0].message
    assert not (tmp_path / "run").exists()


def test_an_unknown_task_is_e806(tmp_path):
    with pytest.raises(ArchDataError, match="unknown task `detect`") as info:
        train(TrainConfig(arch=FCN, task="detect", out=str(tmp_path / "run")))
    assert (info.value.code, info.value.hint) == ("E806", "use classify, segment or auto")


def test_the_data_itself_is_checked_after_reading():
    """The second check_fit reads the data's own task and classes (a user's dataset could have any)."""
    graph = archdsl.graph(FCN)
    shapes = load_data("shapes", (1, 16, 16), synthetic_size=8)
    assert check_fit(graph, shapes) == "segment"
    with pytest.raises(ArchDataError, match="has one label per image") as info:
        check_fit(graph, load_data("synthetic", (1, 16, 16), synthetic_size=8))
    assert info.value.code == "E805"


def test_shapes_need_an_image_input():
    with pytest.raises(ArchDataError, match=r"`shapes` gives images and masks, but the network's input is flat \[64\]"):
        load_data("shapes", (64,))


# ----------------------------------------------------------------------------------------------- the data


def test_shapes_are_the_same_for_the_same_seed():
    images, masks = draw_shapes(16, 3, 24, 20, seed=5)
    again_images, again_masks = draw_shapes(16, 3, 24, 20, seed=5)
    assert torch.equal(images, again_images) and torch.equal(masks, again_masks)
    assert not torch.equal(masks, draw_shapes(16, 3, 24, 20, seed=6)[1])
    assert images.shape == (16, 3, 24, 20) and images.dtype == torch.float32
    assert masks.shape == (16, 24, 20) and masks.dtype == torch.long


def test_masks_mark_exactly_the_shapes_of_the_images():
    """Without noise, a pixel is brighter than any background (0.3) exactly where its mask is not background."""
    images, masks = draw_shapes(64, 3, 32, 32, noise=0.0)
    assert torch.equal(images.min(1).values > 0.4, masks > 0)
    # A shape has one colour: the pixels of one class in one image take few colours (one per shape drawn).
    for image, mask in zip(images[:8], masks[:8], strict=True):
        for kind in mask.unique().tolist():
            colours = image[:, mask == kind].T.unique(dim=0)
            assert len(colours) <= (1 if kind == 0 else 4)


def test_the_classes_are_balanced_enough_to_learn():
    _, masks = draw_shapes(512, 1, 32, 32)
    share = torch.bincount(masks.flatten(), minlength=len(SHAPE_CLASSES)).double() / masks.numel()
    assert 0.65 < share[0] < 0.9  # background, the most common class
    assert all(0.04 < share[kind] < 0.12 for kind in (1, 2, 3)), share
    in_images = [(masks == kind).flatten(1).any(1).double().mean() for kind in (1, 2, 3)]
    assert all(0.5 < seen < 0.8 for seen in in_images), in_images


def test_shapes_data_fits_the_network():
    data = load_data("shapes", (3, 24, 20), synthetic_size=40)
    assert (data.task, data.num_classes, data.name, data.note) == ("segment", 4, "shapes", None)
    assert len(data.train) == 40 and len(data.test) == 10
    x, y = data.train[0]
    assert x.shape == (3, 24, 20) and y.shape == (24, 20) and y.dtype == torch.long
    train_images = torch.stack([data.train[i][0] for i in range(40)])
    assert abs(train_images.mean().item()) < 1e-4 and abs(train_images.std().item() - 1) < 1e-3  # normalised


def test_masks_are_cropped_to_a_smaller_output():
    """A U-Net of valid convolutions sees the centre of its input: its masks are that centre."""
    full = load_data("shapes", (1, 32, 32), synthetic_size=8)
    cropped = load_data("shapes", (1, 32, 32), synthetic_size=8, output_shape=(4, 19, 24))
    assert (
        cropped.note
        == "shapes: masks cropped to the centre 19x24 of the 32x32 images, the size of the network's output"
    )
    assert torch.equal(cropped.train[3][0], full.train[3][0])
    assert torch.equal(cropped.train[3][1], full.train[3][1][6:25, 4:28])  # torchvision's centre_crop offsets


# ----------------------------------------------------------------------------------------------- the metrics


def test_pixel_accuracy_and_mean_iou_on_a_hand_made_prediction():
    targets = torch.tensor([[0, 0, 1], [1, 2, 2]])
    predictions = torch.tensor([[0, 1, 1], [1, 2, 0]])
    confusion = confusion_matrix(predictions, targets, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]  # rows: targets
    assert pixel_accuracy(confusion) == 4 / 6
    # IoU: background 1/3 (1 hit, 1 false alarm, 1 miss), 1: 2/3, 2: 1/2; class 3 is in neither, so skipped.
    assert mean_iou(confusion) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3, abs=1e-12)
    predictions[0, 0] = 3  # predicted where absent: class 3 now counts, with an IoU of 0
    assert mean_iou(confusion_matrix(predictions, targets, 4)) == pytest.approx((0 + 2 / 3 + 1 / 2 + 0) / 4)
    perfect = confusion_matrix(targets, targets, 4)
    assert (pixel_accuracy(perfect), mean_iou(perfect)) == (1.0, 1.0)
    assert (pixel_accuracy(torch.zeros(4, 4)), mean_iou(torch.zeros(4, 4, dtype=torch.long))) == (0.0, 0.0)


def test_evaluation_scores_all_test_pixels_at_once():
    """Over two batches, the scores are those of one confusion matrix, not a mean of the batches'."""
    targets = torch.tensor([[[0, 0, 1], [1, 2, 2]], [[0, 0, 0], [0, 0, 0]]])
    predictions = torch.tensor([[[0, 1, 1], [1, 2, 0]], [[0, 0, 0], [0, 3, 3]]])

    class Fixed(torch.nn.Module):
        def forward(self, index):  # the "image" is its index: the logits pick its prediction
            return torch.nn.functional.one_hot(predictions[index.long()], 4).permute(0, 3, 1, 2).float() * 10

    loader = DataLoader(TensorDataset(torch.arange(2), targets), batch_size=1)
    loss, accuracy, iou = evaluate_segmentation(Fixed(), loader, torch.device("cpu"), 4)
    confusion = confusion_matrix(predictions, targets, 4)
    assert (accuracy, iou) == (pixel_accuracy(confusion), mean_iou(confusion))
    # Background 5/9, 1: 2/3, 2: 1/2, 3: 0 (only predicted); the mean of the batches' would be (1/2 + 1/3) / 2.
    assert (accuracy, iou) == (8 / 12, pytest.approx((5 / 9 + 2 / 3 + 1 / 2 + 0) / 4, abs=1e-12))
    assert loss > 0


# ----------------------------------------------------------------------------------------------- training


def test_cli_trains_a_segmenter_on_shapes_and_reports_pixel_accuracy_and_mean_iou(tmp_path):
    source = tmp_path / "fcn.arch"
    source.write_text(FCN.replace("size = 16", "size = 32").replace("width = 8", "width = 16"))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "archdsl", "train", str(source), "--epochs", "4", "--batch-size", "8"]
    command += ["--optimizer", "adamw", "--lr", "0.01", "--synthetic-size", "256", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run([*command, "--out", str(run)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pixel acc" in result.stdout and "mIoU" in result.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = records[-1]
    assert f"test pixel accuracy {final['test_acc']:.2%}, mean IoU {final['test_miou']:.2%}" in result.stdout
    background = load_data("shapes", (1, 32, 32), synthetic_size=256).test.tensors[1].eq(0).double().mean().item()
    # Predicting background everywhere scores its share (0.81 here) and a mean IoU of a quarter of that.
    assert final["test_acc"] > background + 0.04 and final["test_miou"] > 0.35, (final, background)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    training = torch.load(run / "checkpoint.pt", weights_only=True)["training"]
    assert (training["config"]["task"], training["config"]["data"]) == ("segment", "shapes")
    evaluated = [sys.executable, "-m", "archdsl", "eval", str(source), "--checkpoint", str(run / "checkpoint.pt")]
    result = subprocess.run(evaluated, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("shapes: test pixel accuracy ") and ", mean IoU " in result.stdout


def test_a_resumed_segmentation_run_ends_with_the_same_weights(tmp_path):
    straight = train(tiny(tmp_path / "a"))
    first = train(tiny(tmp_path / "b", stop_after=1))
    resumed = train(TrainConfig(arch=FCN, resume=str(first.out / "checkpoint.pt"), device="cpu"))
    assert [h["test_miou"] for h in resumed.history] == [h["test_miou"] for h in straight.history]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_resuming_with_another_task_is_e807_naming_the_field(tmp_path):
    checkpoint = train(tiny(tmp_path, stop_after=1)).out / "checkpoint.pt"
    with pytest.raises(ArchDataError) as info:
        train(TrainConfig(arch=FCN, resume=str(checkpoint), task="classify", device="cpu"))
    assert info.value.code == "E807"
    assert info.value.message == (
        f"cannot resume from {checkpoint}: `training.config.task` is 'segment', but --task classify was asked for"
    )
    assert info.value.hint == "leave --task out to go on with the run's 'segment', or start a new run to classify"
    resumed = train(TrainConfig(arch=FCN, resume=str(checkpoint), task="segment", device="cpu"))
    assert len(resumed.history) == 2
    report = evaluate(str(checkpoint), device="cpu")  # the task's own data: shapes
    assert (report["task"], report["data"], report["samples"]) == ("segment", "shapes", 128)
    assert 0 < report["test_miou"] <= 1 and 0 < report["test_acc"] <= 1


def test_a_tampered_task_is_e807_and_an_older_checkpoint_without_one_still_resumes(tmp_path):
    checkpoint = train(tiny(tmp_path, arch=CLASSIFIER, data="synthetic", stop_after=1)).out / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload["training"]["config"]["task"] = "detect"
    torch.save(seal(payload), tmp_path / "tampered.pt")
    with pytest.raises(ArchDataError, match="`training.config.task` must be one of classify, segment, not 'detect'"):
        train(TrainConfig(arch=CLASSIFIER, resume=str(tmp_path / "tampered.pt"), device="cpu"))
    del payload["training"]["config"]["task"]  # as a checkpoint written before segmentation
    torch.save(seal(payload), checkpoint)
    resumed = train(TrainConfig(arch=CLASSIFIER, resume=str(checkpoint), device="cpu"))
    assert len(resumed.history) == 2 and "test_miou" not in resumed.history[-1]


def test_curves_of_a_segmentation_run_draw_the_mean_iou():
    records = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "test_loss": 1 / e,
            "train_acc": 0.8,
            "test_acc": 0.8,
            "test_miou": 0.3,
            "lr": 0.1,
        }
        for e in (1, 2)
    ]
    scores = history_figure(records).axes[1]
    assert [line.get_label() for line in scores.lines] == [
        "train pixel accuracy",
        "test pixel accuracy",
        "test mean IoU",
    ]
    assert scores.get_ylabel() == "pixel accuracy and mean IoU (%)"
    classified = history_figure([{k: v for k, v in r.items() if k != "test_miou"} for r in records]).axes[1]
    assert [line.get_label() for line in classified.lines] == ["train", "test"]


def test_the_zoo_unet_trains_on_the_centre_of_the_masks(tmp_path):
    """The paper's U-Net (valid convolutions) outputs the centre of its input: 4x4 of 188x188 at the least."""
    with pytest.raises(ArchDataError) as info:
        check_fit(archdsl.graph("unet"), None, "")
    assert info.value.message == "the network outputs [2, 388, 388] but `shapes` has 4 classes per pixel"
    assert info.value.hint == "add `-p num_classes=4`"
    overrides = {"num_classes": 4, "base": 2, "size": 188}
    result = train(tiny(tmp_path, arch="unet", overrides=overrides, epochs=1, synthetic_size=16))
    assert result.notes == [
        "shapes: masks cropped to the centre 4x4 of the 188x188 images, the size of the network's output"
    ]
    assert "test_miou" in result.history[-1]
