"""VOC 2012 + SBD readers and splits (B.4), the input pipeline (B.5), loss and metrics (B.6)."""

import numpy as np
import pytest
import torch
from seg_fixtures import SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL, write_voc_tree

from pac_models.segmentation import (
    MEAN_RGB,
    ConfusionMatrix,
    SegmentationInputs,
    VOCSegmentation,
    image_to_input,
    input_to_image,
    segmentation_loss,
    split_ids,
)
from pac_models.segmentation.data import (
    convert_sbd_labels,
    read_label_png,
    read_sbd_mat,
    voc_palette,
    write_label_png,
)


@pytest.fixture
def tree(tmp_path):
    return write_voc_tree(tmp_path)


def test_splits(tree, tmp_path):
    voc, sbd, _ = tree
    assert split_ids("train", voc) == sorted(VOC_TRAIN)
    assert split_ids("val", tmp_path) == sorted(VOC_VAL)  # a folder above VOC2012 works
    aug = sorted((set(VOC_TRAIN) | set(SBD_TRAIN) | set(SBD_VAL)) - set(VOC_VAL))
    assert split_ids("train_aug", voc, sbd) == aug
    assert split_ids("trainval_aug", voc, tmp_path) == sorted(set(aug) | set(VOC_VAL))
    assert split_ids("train_aug_rand2", voc, sbd) == aug
    with pytest.raises(ValueError, match="needs SBD"):
        split_ids("train_aug", voc)
    with pytest.raises(ValueError, match="unknown split"):
        split_ids("trian", voc)
    with pytest.raises(FileNotFoundError, match=r"train11\.txt"):
        split_ids("train11", voc)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train11.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val11.txt").write_text("2008_000005\n2007_000004\n2007_000003\n")
    assert split_ids("val11_sbd", voc, sbd, lists) == ["2007_000003", "2007_000004"]
    assert split_ids("train11_sbd", voc, sbd, lists) == sorted(set(VOC_TRAIN) | set(SBD_TRAIN))
    assert len(split_ids("trainval11", voc, sbd, lists)) == 5
    (lists / "seg11valid.txt").write_text("2007_000004\n")
    assert split_ids("val11_sbd", voc, sbd, lists) == ["2007_000004"]


def test_reading_voc_and_sbd(tree):
    voc, sbd, labels = tree
    ds = VOCSegmentation(voc, "train_aug", sbd_root=sbd)
    assert len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        assert s.label.dtype == torch.int64 and s.image.dtype == torch.float32
        assert torch.equal(s.label, torch.from_numpy(labels[s.id].astype(np.int64)))
        assert s.image.shape == (3, 40, 56)
    img_path, lab_path = ds.paths("2007_000001")  # in both: VOC wins
    assert "VOC2012" in str(img_path) and lab_path.suffix == ".png"
    # SBD labels were cached as palette PNGs
    png = sbd / "cls_png" / "2008_000005.png"
    assert png.is_file() and np.array_equal(read_label_png(png), labels["2008_000005"])
    assert ds.paths("2008_000005")[1] == png
    assert convert_sbd_labels(sbd) == 2  # 2007_000001/3 were read from VOC, never converted
    test = VOCSegmentation(voc, "test")
    assert (test[0].label == 255).all()


def test_sbd_mat_and_palette_png(tmp_path):
    from scipy.io import savemat

    lab = np.array([[0, 1, 2], [20, 255, 3]], np.uint8)
    savemat(str(tmp_path / "a.mat"), {"GTcls": {"Segmentation": lab}})
    assert np.array_equal(read_sbd_mat(tmp_path / "a.mat"), lab)
    savemat(str(tmp_path / "b.mat"), {"other": lab})
    with pytest.raises(ValueError, match="GTcls"):
        read_sbd_mat(tmp_path / "b.mat")
    write_label_png(tmp_path / "l.png", lab)
    from PIL import Image

    with Image.open(tmp_path / "l.png") as im:
        assert im.mode == "P"
        assert im.getpalette()[3:6] == [128, 0, 0]  # class 1 = aeroplane red
    assert np.array_equal(read_label_png(tmp_path / "l.png"), lab)
    pal = voc_palette()
    assert pal[:3] == [0, 0, 0] and pal[15 * 3:15 * 3 + 3] == [192, 128, 128]
    assert pal[255 * 3:] == [255, 255, 255]
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_label_png(tmp_path / "rgb.png")


def test_image_to_input_is_bgr_mean_subtracted():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    x = image_to_input(rgb)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([50 - MEAN_RGB[2], 100 - MEAN_RGB[1],
                                                    200 - MEAN_RGB[0]]))
    assert np.array_equal(input_to_image(x), rgb)
    with pytest.raises(ValueError, match="\\(H, W, 3\\)"):
        image_to_input(np.zeros((2, 3)))


def test_train_crop_pads_with_ignore_and_flips_consistently():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    label = np.tile(np.arange(30, dtype=np.uint8), (20, 1))  # label = column index
    tf = SegmentationInputs(crop=25, train=True)
    flips = 0
    for seed in range(12):
        x, lab = tf(rgb, label, np.random.default_rng(seed))
        assert x.shape == (3, 25, 25) and lab.shape == (25, 25)
        assert (lab[20:] == 255).all() and not x[:, 20:].any()  # rows padded (H=20 < 25)
        valid = lab[:20]
        assert (valid != 255).all()
        img = input_to_image(x[:, :20])
        row = valid[0].numpy()
        flipped = row[0] > row[-1]
        flips += flipped
        src = rgb[:, ::-1] if flipped else rgb
        c0 = (29 - row[0]) if flipped else row[0]
        assert np.array_equal(img, src[:, c0:c0 + 25])  # image and label crop together
    assert 0 < flips < 12
    nocrop = SegmentationInputs(crop=-1, train=True, flip=False)
    x, lab = nocrop(rgb, label, np.random.default_rng(0))
    assert x.shape == (3, 20, 30) and torch.equal(lab, torch.from_numpy(label).long())


def test_test_crop_places_top_left_and_cuts_label():
    rgb = np.full((20, 30, 3), 77, np.uint8)
    label = np.ones((20, 30), np.uint8)
    x, lab = SegmentationInputs(crop=32, train=False)(rgb, label)
    assert x.shape == (3, 32, 32) and lab.shape == (20, 30)
    assert not x[:, 20:].any() and not x[:, :, 30:].any() and x[:, :20, :30].any()
    x, lab = SegmentationInputs(crop=16, train=False)(rgb, label)
    assert x.shape == (3, 16, 16) and lab.shape == (16, 16)
    with pytest.raises(ValueError, match="sizes differ"):
        SegmentationInputs(crop=16, train=False)(rgb, label[:5])


def test_scale_and_jitter_run():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    tf = SegmentationInputs(crop=16, train=True, scale=0.5, jitter=True)
    x, lab = tf(rgb, label, np.random.default_rng(1))
    assert x.shape == (3, 16, 16) and set(lab.unique().tolist()) <= {0, 1, 2, 255}


def test_rand_split_draws_per_epoch(tree):
    voc, sbd, _ = tree
    ds = VOCSegmentation(voc, "train_aug_rand2", sbd_root=sbd, seed=3)
    assert len(ds) == 2
    draws = set()
    for e in range(8):
        ds.epoch = e
        draws.add(tuple(ds[i].id for i in range(2)))
    assert len(draws) > 1
    with pytest.raises(ValueError, match="random ids"):
        VOCSegmentation(voc, "train_rand9", sbd_root=sbd)


def test_confusion_matrix_and_miou_with_ignore():
    cm = ConfusionMatrix(3)
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    iou = cm.iou()
    assert np.allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx(np.mean([1 / 3, 2 / 3, 1 / 2]))
    assert cm.acc() == pytest.approx(4 / 6)
    assert cm.macc() == pytest.approx(np.mean([1 / 2, 1, 1 / 2]))
    cm2 = ConfusionMatrix(4)
    cm2.update(np.array([0, 1]), np.array([0, 1]))
    assert cm2.miou() == 1.0  # classes absent from labels and predictions are skipped
    with pytest.raises(ValueError, match="same shape"):
        cm.update(pred, label[0])
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_losses():
    torch.manual_seed(0)
    out = torch.randn(2, 3, 4, 5)
    label = torch.randint(0, 3, (2, 4, 5))
    label[0, 0] = 255
    ce = segmentation_loss(out, label)
    valid = label != 255
    ref = torch.nn.functional.cross_entropy(out.permute(0, 2, 3, 1)[valid], label[valid])
    assert torch.allclose(ce, ref)
    f = segmentation_loss(out, label, "fce_0.5")
    per = torch.nn.functional.cross_entropy(out, label, ignore_index=255, reduction="none")
    per = torch.where(per < -np.log(0.5), 0.0, per)
    assert torch.allclose(f, per.mean())
    with pytest.raises(ValueError, match="must match"):
        segmentation_loss(out, label[:, :2])
    with pytest.raises(ValueError, match="'ce' or 'fce_<t>'"):
        segmentation_loss(out, label, "dice")
    with pytest.raises(ValueError, match="positive"):
        segmentation_loss(out, label, "fce_x")
