"""Tiny VOC2012 + SBD trees written in the real formats (for the segmentation tests)."""

from pathlib import Path

import numpy as np

VOC_TRAIN = ["2007_000001", "2007_000002"]
VOC_VAL = ["2007_000003", "2007_000004"]
SBD_TRAIN = ["2007_000001", "2008_000005", "2008_000006"]
SBD_VAL = ["2007_000003", "2008_000007"]


def _rgb(rng, h, w):
    # smooth content so JPEG round trips stay close
    y, x = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 200, 3)
    img = base[None, None, :] + (x[..., None] * 40 // w) + (y[..., None] * 10 // h)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_voc_tree(root: Path, h: int = 40, w: int = 56, seed: int = 0, classes: int = 4):
    """Write VOCdevkit/VOC2012 and benchmark_RELEASE/dataset under ``root``.

    Returns:
        ``(voc_root, sbd_root, labels)`` with ``labels[id]`` the uint8 label array.
    """
    from PIL import Image
    from scipy.io import savemat

    from pac_models.segmentation.data import write_label_png

    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation",
              sbd / "img", sbd / "cls"):
        d.mkdir(parents=True, exist_ok=True)
    labels = {}

    def label():
        lab = np.zeros((h, w), np.uint8)
        lab[:, w // 2:] = rng.integers(1, classes)
        lab[h // 2:, : w // 3] = rng.integers(1, classes)
        lab[0, :] = 255  # void border row
        return lab

    for i in VOC_TRAIN + VOC_VAL:
        Image.fromarray(_rgb(rng, h, w)).save(voc / "JPEGImages" / f"{i}.jpg", quality=95)
        labels[i] = label()
        write_label_png(voc / "SegmentationClass" / f"{i}.png", labels[i])
    test_id = "2008_000099"
    Image.fromarray(_rgb(rng, h, w)).save(voc / "JPEGImages" / f"{test_id}.jpg", quality=95)
    for name, ids in (("train", VOC_TRAIN), ("val", VOC_VAL), ("trainval", VOC_TRAIN + VOC_VAL),
                      ("test", [test_id])):
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    for i in sorted(set(SBD_TRAIN + SBD_VAL)):
        Image.fromarray(_rgb(rng, h, w)).save(sbd / "img" / f"{i}.jpg", quality=95)
        lab = label()
        lab[lab == 255] = 0  # SBD has no void label
        if i not in labels:
            labels[i] = lab
        savemat(str(sbd / "cls" / f"{i}.mat"), {"GTcls": {
            "Segmentation": lab, "Boundaries": np.zeros((1, 1)), "CategoriesPresent": np.ones(1)}})
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return voc, sbd, labels
