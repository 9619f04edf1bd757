"""`pac-models eval` / `train` with segmentation models on a tiny VOC + SBD tree."""

import numpy as np
import pytest
import torch
from seg_fixtures import VOC_VAL, write_voc_tree

from pac_models.cli import main
from pac_models.segmentation import SegmentationInputs, VOCSegmentation, evaluate

TINY = ["--model-arg", "width=4", "--model-arg", "fc_channels=8", "--model-arg", "init='default'"]


@pytest.fixture
def tree(tmp_path):
    return write_voc_tree(tmp_path / "data")


def test_eval_voc_writes_predictions(tree, tmp_path, capsys):
    voc, _, _ = tree
    out = tmp_path / "pred"
    assert main(["eval", "--model", "fcn8s_crfi2p4d531", *TINY, "--num-classes", "4",
                 "--data", str(voc), "--quiet", "--save-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "voc val, fcn8s_crfi2p4d531: mIoU" in text and "over 2 images" in text
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(VOC_VAL)
    # the PAC-FCN model needs the 64x64 canvas (multiple of 32); outputs are cut to the label
    assert main(["eval", "--model", "fcn8spac", *TINY, "--num-classes", "4", "--data", str(voc),
                 "--test-crop", "64", "--limit", "1", "--quiet", "--save", "raw",
                 "--save-dir", str(out)]) == 0
    raw = np.load(out / f"{sorted(VOC_VAL)[0]}.npy")
    assert raw.shape == (4, 40, 56) and raw.dtype == np.float32
    with pytest.raises(SystemExit, match="--data PATH"):
        main(["eval", "--model", "fcn8spac", *TINY, "--quiet"])
    with pytest.raises(SystemExit, match="--dataset voc"):
        main(["eval", "--model", "fcn8s", "--dataset", "nyu", "--data", str(voc)])
    with pytest.raises(SystemExit, match="TYPE of edge 0"):
        main(["eval", "--model", "fcn8s_crfp9d5161", "--data", str(voc)])


def test_evaluate_matches_confusion_by_hand(tree):
    voc, _, labels = tree

    class Oracle(torch.nn.Module):
        num_classes = 4

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, out_crop=None):
            out = torch.zeros(x.shape[0], 4, *x.shape[-2:])
            out[:, 1] = 1.0  # always class 1
            return out[:, :, :out_crop[0], :out_crop[1]]

    ds = VOCSegmentation(voc, "val", transform=SegmentationInputs(64, train=False))
    res = evaluate(Oracle(), ds, progress=False)
    lab = np.concatenate([labels[i].ravel() for i in sorted(VOC_VAL)])
    lab = lab[lab != 255]
    ious = []
    for c in range(4):
        tp = np.sum((lab == c) & (c == 1))
        fp = np.sum((lab != c) & (c == 1))
        fn = np.sum((lab == c) & (c != 1))
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    assert res.miou == pytest.approx(np.mean(ious)) and res.count == 2
    assert res.acc == pytest.approx(np.mean(lab == 1))


def test_train_voc_snapshots_and_resume(tree, tmp_path, capsys):
    voc, sbd, _ = tree
    out = tmp_path / "run"
    base = ["train", "--model", "fcn8sfrozen_crfi2lp4d531", *TINY, "--num-classes", "4",
            "--data", str(voc), "--sbd", str(sbd), "--crop", "32", "--max-steps", "2",
            "--eval-limit", "1", "--quiet", "--out", str(out)]
    assert main([*base, "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "epoch 1: loss" in text and "eval mIoU" in text
    w = torch.load(out / "weights_epoch_1.pth", weights_only=True)
    assert w and not any(k.startswith("backbone.") for k in w)  # frozen: pacnet's layout
    assert "crf.steps.1.messengers.0.weight" in w
    ck = torch.load(out / "checkpoint_epoch_1.pth", weights_only=True)
    assert ck["model_name"] == "fcn8sfrozen_crfi2lp4d531" and ck["epoch"] == 1
    assert main([*base, "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and "epoch 2: loss" in text and "epoch 1:" not in text
    assert (out / "weights_epoch_2.pth").is_file()
    # stage 2: a loose joint model initialised non-strictly from the stage-1 snapshot
    out2 = tmp_path / "run2"
    assert main(["train", "--model", "fcn8s_crfi2lp4d531", *TINY, "--num-classes", "4",
                 "--data", str(voc), "--sbd", str(sbd), "--crop", "32", "--max-steps", "1",
                 "--eval-limit", "0", "--quiet", "--out", str(out2), "--lr", "1e-7",
                 "--init-weights", str(out / "weights_epoch_2.pth"), "--train-split",
                 "train_aug_rand2", "--loss", "fce_0.9"]) == 0
    text = capsys.readouterr().out
    assert "non-strictly" in text and "missing keys ['backbone.conv1_1.weight'" in text
    assert (out2 / "weights_epoch_1.pth").is_file()


def test_list_and_task_detection(capsys):
    import argparse

    from pac_models.cli import _task

    assert main(["list", "fcn8s*"]) == 0
    out = capsys.readouterr().out
    assert "fcn8s_crfi5p4d5641p4d5161" in out and "segmentation" in out
    assert "pac_joint_upsample" not in out

    def ns(model, task="auto"):
        return argparse.Namespace(model=model, task=task)

    assert _task(ns("fcn8sfrozen_crfi5lp4d5641p4d5161")) == "segmentation"
    assert _task(ns("FCN8sPac")) == "segmentation"
    assert _task(ns("pac_joint_upsample")) == "depth" and _task(ns("JBU_9_10_0.5")) == "depth"
    assert _task(ns("fcn8s", "depth")) == "depth"
