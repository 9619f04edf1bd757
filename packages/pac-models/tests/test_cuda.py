"""The models, upsample(), evaluation and training on a CUDA device (skipped without one)."""

import numpy as np
import pytest
import torch

from pac_models import create_model, list_models
from pac_models.depth import upsample

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("factor", [4, 8, 16])
@pytest.mark.parametrize("name", list_models(tag="depth"))
def test_forward_backward_matches_cpu(name, factor):
    torch.manual_seed(0)
    cpu = create_model(name, factor=factor)
    gpu = create_model(name, factor=factor).cuda()
    gpu.load_state_dict(cpu.state_dict())
    low = torch.rand(2, 2, 3, 4)
    guide = torch.rand(2, 3, 3 * factor, 4 * factor)
    out_c = cpu(low, guide)
    out_g = gpu(low.cuda(), guide.cuda())
    assert out_g.device.type == "cuda"
    torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-3, atol=1e-4)
    if any(p.requires_grad for p in gpu.parameters()):
        out_g.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in gpu.parameters() if p.requires_grad)


def test_upsample_with_cuda_model():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 3, (6, 8)).astype(np.float32)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    net = create_model("pac_joint_upsample_lite", factor=8)
    ref = upsample(depth, rgb, 8, model=net)
    out = upsample(depth, rgb, 8, model=net.cuda())
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_train_and_eval_on_cuda(tmp_path, capsys):
    from pac_models.cli import main

    args = ["train", "--model", "pac_joint_upsample_lite", "--factor", "4", "--scenes", "2",
            "--scene-size", "32", "--crop", "16", "--batch-size", "2", "--eval-limit", "1",
            "--out", str(tmp_path), "--device", "cuda", "--quiet"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2"]) == 0  # resume on the GPU from a CPU-saved checkpoint
    assert "resumed" in capsys.readouterr().out
    assert main(["eval", "--model", "bilinear", "--factor", "8", "--crop", "100", "200", "128", "128",
                 "--device", "cuda"]) == 0
