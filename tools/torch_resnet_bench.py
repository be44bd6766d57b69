"""Times one ResNet training step (forward + backward + SGD with momentum) in PyTorch, on the CPU
or on a CUDA GPU.

The twin of bench/resnet_bench.ts: the same models (ResNet-18 of the original NVRM code's
model/resnet.py, i.e. kuangliu/pytorch-cifar: 3x3 stem, no max-pool, BasicBlocks with a 1x1 conv +
BatchNorm projection shortcut, 4x4 average pooling; and the CIFAR ResNet-20 built from the same
blocks with stages of 16/32/64 channels and global average pooling), the same input (3x32x32,
random, fixed labels) and the same thread count. Prints one JSON line per model and batch size:
{"model", "batch", "device", "threads", "torch", "ms": [per-round step times], "ms_per_step": median,
"images_per_s": median}.

  python tools/torch_resnet_bench.py --models resnet20,resnet18 --batches 32 --threads 2
  python tools/torch_resnet_bench.py --device cuda --models resnet18 --batches 128 --steps 10

On --device cuda (the GPU reference of tools/device/check.sh) the step is float32 with TF32 off
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False), the loss is not
read back inside a round, and each round ends with torch.cuda.synchronize(): the same "encode the
steps, wait once" timing as ours on WebGPU. Needs torch (the CPU wheel is enough for --device cpu).
"""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_timing import device_name, setup_device, time_rounds


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks, widths, pool, num_classes=10):
        super().__init__()
        self.in_planes = widths[0]
        self.pool = pool
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers = []
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers.append(self._make_layer(w, n, 1 if i == 0 else 2))
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(widths[-1], num_classes)

    def _make_layer(self, planes, n, stride):
        out = []
        for s in [stride] + [1] * (n - 1):
            out.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*out)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.avg_pool2d(out, 4) if self.pool == "avg4" else F.adaptive_avg_pool2d(out, 1)
        return self.linear(out.view(out.size(0), -1))


def make(name):
    if name == "resnet18":
        return ResNet([2, 2, 2, 2], [64, 128, 256, 512], "avg4")
    if name == "resnet20":
        return ResNet([3, 3, 3], [16, 32, 64], "global")
    raise SystemExit(f"unknown model {name!r}: resnet20 or resnet18")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,resnet18")
    ap.add_argument("--batches", default="32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    for name in ("rounds", "steps", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be a positive integer, got {getattr(a, name)}")
    dev, sync = setup_device(a.device, a.threads)
    torch.manual_seed(0)
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batches.split(",")]:
            model = make(name).to(dev)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(batch, 3, 32, 32).to(dev)
            y = (torch.arange(batch) % 10).to(dev)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss

            # on the CPU the loss is read back each step, as our CPU bench does
            read = (lambda loss: loss.item()) if a.device == "cpu" else None
            ms, med = time_rounds(step, sync, a.warmup, a.rounds, a.steps, read)
            print(json.dumps({
                "model": name,
                "batch": batch,
                "device": device_name(a.device),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "ms": ms,
                "ms_per_step": med,
                "images_per_s": batch * 1000 / med,
            }), flush=True)


if __name__ == "__main__":
    main()
