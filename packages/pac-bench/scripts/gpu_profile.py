"""Where the CUDA backend's time goes (run by gpu_check.sh; needs a GPU).

Prints, for the 1x64x512x512 k5 case: a kernel-time table of one native forward of each layer
(torch.profiler), and forward times of cuDNN and native with TF32 off and on (CUDA events).
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d


def median_ms(fn, iters=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main() -> None:
    dev = "cuda"
    torch.manual_seed(0)
    n, c, g, k = 512, 64, 16, 5
    x = torch.randn(1, c, n, n, device=dev)
    gd = torch.randn(1, g, n, n, device=dev)
    xl = torch.randn(1, c, n // 2, n // 2, device=dev)
    conv = PacConv2d(c, c, k, padding=2).to(dev)
    convt = PacConvTranspose2d(c, c, k, stride=2, padding=2, output_padding=1).to(dev)
    pool = PacPool2d(k, padding=2).to(dev)
    layers = {"conv2d": lambda: conv(x, gd), "conv_transpose2d": lambda: convt(xl, gd),
              "pool2d": lambda: pool(x, gd)}
    with torch.no_grad():
        for name, fn in layers.items():
            fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            print(f"=== profile native {name} fwd 1x{c}x{n}x{n}")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8,
                                            max_name_column_width=60))
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            t_cudnn = median_ms(lambda: F.conv2d(x, conv.weight, conv.bias, padding=2))
            t_nat = median_ms(layers["conv2d"])
            t_pool = median_ms(lambda: F.avg_pool2d(x, k, stride=1, padding=2))
            print(f"tf32={tf32}: cudnn conv2d {t_cudnn:.3f} ms, native PacConv2d {t_nat:.3f} ms "
                  f"({t_nat / t_cudnn:.2f}x); avg_pool2d {t_pool:.3f} ms")
        a = torch.randn(8192, 8192, device=dev)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            t = median_ms(lambda: a @ a, iters=5)
            print(f"sgemm 8192^3 tf32={tf32}: {t:.2f} ms = {2 * 8192**3 / t / 1e9:.1f} TFLOP/s")
        buf = torch.empty(2**28, device=dev)
        t = median_ms(lambda: buf.clone(), iters=5)
        print(f"copy 1 GiB: {t:.3f} ms = {2 * buf.numel() * 4 / t / 1e9:.2f} TB/s (read+write)")


if __name__ == "__main__":
    main()
