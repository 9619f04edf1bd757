"""A run interrupted and restarted with the same output folder ends with the weights of a run
that was never interrupted (depth, segmentation and CRF trainers).

The tests run with one torch thread: with several, the native PAC backward sums weight gradients
over image tiles in whatever order the threads finish, so two uninterrupted runs already differ
in the last bits (about 1e-8).
"""

from pathlib import Path

import pytest
import torch
from torch import nn

from pac_core import PacConv2d
from pac_models import create_model
from pac_models.data import AssembleJointUpsamplingInputs, SyntheticScenes
from pac_models.depth.train import TrainConfig, train
from pac_models.segmentation import SegTrainConfig
from pac_models.segmentation import train as seg_train
from pac_models.segmentation.crf_training import TrainConfig as CrfConfig
from pac_models.segmentation.crf_training import train_crf
from pac_models.segmentation.data import SegSample


class _Interrupting(torch.utils.data.Dataset):
    """``dataset``, but reading more than ``limit`` items raises KeyboardInterrupt (a killed
    run)."""

    def __init__(self, dataset, limit: int) -> None:
        self.dataset, self.limit, self.reads = dataset, limit, 0

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.dataset.epoch = value

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt
        return self.dataset[i]


class _Dropped(nn.Module):
    """A depth model with dropout on its input, so the weights depend on the torch RNG."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = create_model("pac_joint_upsample_lite", factor=4)
        self.drop = nn.Dropout(0.3)

    def forward(self, low, guide):
        return self.net(self.drop(low), guide)


def _scenes():
    return SyntheticScenes(4, (32, 32), factor=4, seed=2,
                           transform=AssembleJointUpsamplingInputs(4, crop=16, flip=True))


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_depth_run_resumes_to_the_uninterrupted_weights(tmp_path, one_thread):
    cfg = TrainConfig(epochs=3, batch_size=2, snapshot_every=1, eval_every=0, lr=1e-3, seed=4)
    full = train(_Dropped(), _scenes(), 4, tmp_path / "full", cfg, progress=False,
                 log=lambda _: None)
    assert full.step == 6
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2, after its first step
        train(_Dropped(), _Interrupting(_scenes(), 6), 4, out, cfg, progress=False,
              log=lambda _: None)
    assert sorted(p.name for p in out.glob("checkpoint_*")) == ["checkpoint_epoch_1.pth"]
    lines: list[str] = []
    res = train(_Dropped(), _scenes(), 4, out, cfg, progress=False, log=lines.append)
    assert lines[0] == f"resumed from {out / 'checkpoint_epoch_1.pth'} (epoch 1, step 2)"
    assert (res.start_epoch, res.epochs, res.step) == (2, 3, 6)
    assert res.losses == full.losses[1:]
    a, b = _weights(full.weights), _weights(res.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ck = _weights(out / "checkpoint_epoch_3.pth")
    assert ck["step"] == 6 and ck["world_size"] == 1 and len(ck["rng"]) == 1
    assert {"torch", "numpy", "python"} <= ck["rng"][0].keys()
    # without the random states the resumed run draws other dropout masks
    again = tmp_path / "again"
    with pytest.raises(KeyboardInterrupt):
        train(_Dropped(), _Interrupting(_scenes(), 6), 4, again, cfg, progress=False,
              log=lambda _: None)
    state = _weights(again / "checkpoint_epoch_1.pth")
    del state["rng"]
    state["torch_rng"] = torch.manual_seed(123).get_state()
    torch.save(state, again / "checkpoint_epoch_1.pth")
    other = train(_Dropped(), _scenes(), 4, again, cfg, progress=False, log=lambda _: None)
    c = _weights(other.weights)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Seg(nn.Module):
    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = PacConv2d(3, 3, 3, padding=1)
        self.drop = nn.Dropout(0.2)

    def forward(self, image, size):
        return self.conv(self.drop(image), image)[..., : size[0], : size[1]]


def _seg_items():
    g = torch.Generator().manual_seed(1)
    return [SegSample(torch.randn(3, 8, 8, generator=g), torch.randint(0, 3, (8, 8), generator=g),
                      f"s{i}") for i in range(4)]


def test_segmentation_run_resumes_to_the_uninterrupted_weights(tmp_path, one_thread):
    cfg = SegTrainConfig(epochs=3, batch_size=2, lr=1e-2)
    full = seg_train(_Seg(), _seg_items(), tmp_path / "full", cfg, progress=False,
                     log=lambda _: None)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        seg_train(_Seg(), _Interrupting(_seg_items(), 10), out, cfg, progress=False,
                  log=lambda _: None)
    res = seg_train(_Seg(), _seg_items(), out, cfg, progress=False, log=lambda _: None)
    assert (res.start_epoch, res.step) == (3, 6) and res.losses == full.losses[2:]
    a, b = _weights(full.weights), _weights(res.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crf_run_resumes_to_the_uninterrupted_weights(tmp_path, one_thread):
    cfg = CrfConfig(steps=6, batch=2, scenes=3, size=(32, 32), factors=(8,), eval_scenes=1,
                    crf="crfi2p0ds311")
    full = train_crf(cfg, log=None)

    def killed_at_step_5(msg: str) -> None:
        if msg.startswith("step 5/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_crf(cfg, log=killed_at_step_5, log_every=1, checkpoint_dir=tmp_path,
                  checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_step_2.pth",
                                                        "checkpoint_step_4.pth"]
    lines: list[str] = []
    res = train_crf(cfg, log=lines.append, log_every=0, checkpoint_dir=tmp_path,
                    checkpoint_every=2)
    assert lines == [f"resumed from {tmp_path / 'checkpoint_step_4.pth'} (step 4)"]
    assert res.start_step == 4 and res.losses == full.losses
    assert res.miou_before == full.miou_before and res.miou_after == full.miou_after
    a, b = full.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "checkpoint_step_6.pth").is_file()
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0, got -1"):
        train_crf(cfg, checkpoint_dir=tmp_path, checkpoint_every=-1)
