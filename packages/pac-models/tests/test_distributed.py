"""Data-parallel training: PAC layers under DDP and FSDP2 (two gloo processes on the CPU) against
one process on the same global batch, the trainers under ``torchrun``, the sampler and the
batch split."""

import os
import subprocess
import sys
from itertools import chain
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d
from pac_models import distributed
from pac_models.cli import main
from pac_models.segmentation.data import SegSample

WORLD = 2
BATCH = 4  # global
STEPS = 3


class _PacNet(nn.Module):
    """Every PAC layer kind: a guided conv, a guided pool, a guided transposed conv."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = PacConv2d(3, 4, 3, padding=1)
        self.pool = PacPool2d(3, stride=2, padding=1)
        self.up = PacConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)

    def forward(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = torch.relu(self.conv(image, image))
        y = self.pool(y, image)
        return self.up(y, image)[..., : size[0], : size[1]]


def _net() -> _PacNet:
    torch.manual_seed(0)
    return _PacNet()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 8, 8, generator=g), torch.randint(0, 3, (BATCH, 8, 8),
                                                                  generator=g)


def _steps(net: nn.Module, params: list[nn.Parameter], image: torch.Tensor,
           label: torch.Tensor) -> list[float]:
    """``STEPS`` Adam steps on a fixed batch; the loss of each, averaged over the processes."""
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(STEPS):
        loss = nn.functional.cross_entropy(net(image, (8, 8)), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        world = distributed.context().world_size
        losses.append(distributed.all_reduce_sums([loss.item()])[0] / world)
    return losses


def _seg_items() -> list[SegSample]:
    image, label = _data()
    return [SegSample(image[i], label[i], f"s{i}") for i in range(BATCH)] * 2


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    finished = False
    try:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from pac_models.segmentation import SegTrainConfig
        from pac_models.segmentation import train as seg_train
        from pac_models.segmentation.crf_training import TrainConfig, train_crf

        image, label = _data()
        share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        res = {}
        net = _net()
        ddp = distributed.wrap(net)
        assert isinstance(ddp, nn.parallel.DistributedDataParallel)
        res["ddp"] = (_steps(ddp, list(net.parameters()), image[share], label[share]),
                      {k: v.clone() for k, v in net.state_dict().items()})
        net = _net()
        mesh = init_device_mesh("cpu", (WORLD,))
        for m in (net.conv, net.up, net):
            fully_shard(m, mesh=mesh)
        losses = _steps(net, list(net.parameters()), image[share], label[share])
        full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True,
                                                                   cpu_offload=True))
        res["fsdp"] = (losses, full)
        # the segmentation trainer: 2 epochs of 2 global batches of 4
        seg = seg_train(_net(), _seg_items(), Path(folder) / "seg",
                        SegTrainConfig(epochs=2, batch_size=BATCH, lr=1e-2),
                        eval_dataset=_seg_items()[:3], progress=False, log=lambda _: None)
        res["seg"] = (seg.losses, seg.evals)
        crf = train_crf(TrainConfig(steps=3, batch=2, scenes=2, size=(32, 32), factors=(8,),
                                    eval_scenes=1, crf="crfi2p0ds311"), log=None)
        res["crf"] = (crf.losses, crf.model.state_dict())
        if rank == 0:
            torch.save(res, Path(folder) / "res.pt")
        finished = True
    finally:
        # Both ranks leave together: a rank that tears gloo down while its peer is still in a
        # collective aborts the peer ("terminate called without an active exception").
        if finished:
            dist.barrier()
        dist.destroy_process_group()
    # A finished worker leaves without running the interpreter's teardown: gloo's threads can
    # still be joinable when C++ static objects are destroyed, which aborts the process
    # ("terminate called without an active exception") after its work is done and saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_pac_layers_and_trainers_under_ddp_and_fsdp2_match_one_process(tmp_path, one_thread):
    """Two gloo processes with half the global batch each take the steps one process takes on
    the whole batch: same losses, same weights (to float32 rounding)."""
    from pac_models.segmentation import SegTrainConfig
    from pac_models.segmentation import train as seg_train
    from pac_models.segmentation.crf_training import TrainConfig, train_crf

    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    res = torch.load(tmp_path / "res.pt", weights_only=True)
    image, label = _data()
    net = _net()
    ref_losses = _steps(net, list(net.parameters()), image, label)
    ref = net.state_dict()
    for kind in ("ddp", "fsdp"):
        losses, sd = res[kind]
        assert losses == pytest.approx(ref_losses, rel=1e-5), kind
        assert sd.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(sd[k], ref[k], rtol=1e-5, atol=1e-6, msg=f"{kind} {k}")
    seg = seg_train(_net(), _seg_items(), tmp_path / "seg1",
                    SegTrainConfig(epochs=2, batch_size=BATCH, lr=1e-2),
                    eval_dataset=_seg_items()[:3], progress=False, log=lambda _: None)
    assert res["seg"][0] == pytest.approx(seg.losses, rel=1e-5)
    # the evaluation set, split unevenly (2 + 1 images), scores as in one process
    assert res["seg"][1] == pytest.approx(seg.evals, abs=1e-9) and len(seg.evals) == 2
    assert torch.load(tmp_path / "seg" / "checkpoint_epoch_2.pth",
                      weights_only=True)["world_size"] == WORLD
    crf = train_crf(TrainConfig(steps=3, batch=2, scenes=2, size=(32, 32), factors=(8,),
                                eval_scenes=1, crf="crfi2p0ds311"), log=None)
    # the void pixels of each half differ, so the mean of the halves' losses is close to, not
    # exactly, the loss of the whole batch
    assert res["crf"][0] == pytest.approx(crf.losses, rel=1e-3)
    for k, v in crf.model.state_dict().items():
        torch.testing.assert_close(res["crf"][1][k], v, rtol=1e-4, atol=1e-5)


def test_torchrun_trains_depth_data_parallel(tmp_path, capsys):
    """``torchrun --nproc-per-node 2 -m pac_models train`` (gloo): the log says the world size
    once, rank 0 writes the snapshots, and the losses, evaluation and weights are those of one
    process with the same global batch; a single process resumes the run."""
    args = ["train", "--model", "pac_joint_upsample_lite", "--factor", "4", "--scenes", "4",
            "--scene-size", "32", "--crop", "16", "--batch-size", "2", "--eval-limit", "3",
            "--epochs", "2", "--seed", "3", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(WORLD), "-m", "pac_models", *args,
                           "--out", str(tmp_path / "ddp")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("data-parallel training: world size 2 (gloo), global batch 2 = 1 per "
                     "process") == 1
    assert out.count("epoch 2: loss") == 1 and out.count("eval rmse") == 1
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = capsys.readouterr().out
    def losses(text: str) -> list[float]:
        return [float(line.split("loss ")[1].split()[0]) for line in text.splitlines()
                if ": loss " in line]

    assert len(losses(out)) == 2 and losses(out) == pytest.approx(losses(one), rel=1e-4)

    def rmse(text: str) -> float:
        (line,) = [x for x in text.splitlines() if "eval rmse" in x]
        assert line.endswith("(3 images)")  # each process scored its share: 2 + 1
        return float(line.split("eval rmse ")[1].split()[0])

    assert rmse(out) == pytest.approx(rmse(one), rel=1e-4)
    a = torch.load(tmp_path / "ddp" / "weights_epoch_2.pth", weights_only=True)
    b = torch.load(tmp_path / "one" / "weights_epoch_2.pth", weights_only=True)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ck = torch.load(tmp_path / "ddp" / "checkpoint_epoch_2.pth", weights_only=True)
    assert ck["world_size"] == WORLD and len(ck["rng"]) == WORLD and ck["step"] == 4
    assert main([*args[:-3], "--epochs", "3", "--quiet", "--out", str(tmp_path / "ddp")]) == 0
    text = capsys.readouterr().out
    assert "(epoch 2, step 4); it was written by 2 process(es), this run has 1" in text
    assert "epoch 3: loss" in text


def test_epoch_order_sampler_splits_the_single_process_batches():
    """N ranks with b samples each see, step by step, the batches of one process with N·b."""
    data = list(range(10))
    for world, per in ((2, 2), (3, 1), (2, 3)):
        gen = lambda e: torch.Generator().manual_seed(7 * 1_000_003 + e)  # noqa: E731
        for epoch in (1, 2):
            single = [b.tolist() for b in torch.utils.data.DataLoader(
                data, batch_size=world * per, shuffle=True, generator=gen(epoch))]
            ranks = []
            for r in range(world):
                s = distributed.EpochOrderSampler(data, gen, world, r)
                s.set_epoch(epoch)
                ranks.append([b.tolist() for b in torch.utils.data.DataLoader(
                    data, batch_size=per, sampler=s)])
            assert len({len(r) for r in ranks}) == 1  # every rank takes the same step count
            together = [sorted(chain(*(r[i] for r in ranks))) for i in range(len(ranks[0]))]
            full = len(data) // (world * per)
            assert together[:full] == [sorted(b) for b in single[:full]]
            # the last, partial batch: the rest of the order, padded from its start
            assert set(chain(*together[full:])) >= set(chain(*single[full:]))


def test_batch_split_and_single_process_context(monkeypatch):
    assert distributed.per_rank_batch(6, 3) == 2
    with pytest.raises(ValueError, match=r"--batch-size is the global batch.*multiple of 4, got 6"):
        distributed.per_rank_batch(6, 4, "--batch-size")
    with pytest.raises(ValueError, match="got 0"):
        distributed.per_rank_batch(0, 1)
    monkeypatch.delenv("RANK", raising=False)
    with distributed.process_group("cpu") as (ctx, device):
        assert not dist.is_initialized() and device == torch.device("cpu")
        assert (ctx.world_size, ctx.rank, ctx.is_main, ctx.distributed) == (1, 0, True, False)
    net = nn.Linear(2, 2)
    assert distributed.wrap(net) is net and distributed.unwrap(net) is net
    assert distributed.all_reduce_sums([1, 2.5]) == [1.0, 2.5]
    assert distributed.gather_objects("x") == ["x"] and distributed.broadcast_object(3) == 3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchrun_on_cuda_uses_nccl_and_one_device_per_process(tmp_path):
    n = min(torch.cuda.device_count(), 2)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(n), "-m", "pac_models", "train", "--model",
                           "pac_joint_upsample_lite", "--factor", "4", "--scenes", "4",
                           "--scene-size", "32", "--crop", "16", "--batch-size", str(2 * n),
                           "--eval-limit", "1", "--epochs", "1", "--device", "cuda", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if n > 1:
        assert f"world size {n} (nccl)" in proc.stdout
    assert (out / "weights_epoch_1.pth").is_file()
