"""Times whole training steps of the small models in PyTorch: the twin of bench/webgpu_train_bench.ts.

The same models (the label-noise MLP 784-256-256-10 with ReLU, and the LeNet of src/nn/models.ts on
3x32x32: conv5x5(6, padding 2) -> ReLU -> maxpool 2 -> conv5x5(16) -> ReLU -> maxpool 2 -> 120 -> 84
-> 10, ReLU between the linear layers), the same batch (128), the same random input and fixed labels,
and the same optimizers and hyperparameters: SGD (lr 0.01), VSGD (lr 0.01, variability 0.05,
num_iters 469), Adam (lr 1e-3) and VAdam (lr 1e-3, variability 0.05, num_iters 469). VSGD and VAdam
are the original NVRM code's optimizers (variable_optim/vsgd.py and vadam.py of Xie et al., MIT),
written out below for their Gaussian case with the same tensor operations in the same order, so
their per-step cost is the original's.

Timing as ours: 2 warm-up steps, then rounds of --steps steps, each round ending with one wait for
the device (torch.cuda.synchronize()); the loss is not read back inside a round. On --device cuda
the step is float32 with TF32 off. Prints one JSON line per model and optimizer:
{"model", "optimizer", "batch", "device", "threads", "torch", "rounds", "steps", "ms": [ms per step of
each round], "ms_per_step": their median, "examples_per_s": at that median}.

  python tools/torch_train_bench.py --device cuda --models mlp,lenet --rounds 5 --steps 50
  python tools/torch_train_bench.py --device cpu --threads 2 --models mlp --rounds 3 --steps 5
"""

import argparse
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import Optimizer
from torch_timing import device_name, setup_device, time_rounds


def variability_step(p, state, group):
    """The original optimizers' last stage (Gaussian): at a step that is not a multiple of num_iters,
    draw new noise, add it and remove the last one; at a multiple, remove the last noise."""
    noise1, noise2 = state["noise1"], state["noise2"]
    if state["step"] % group["num_iters"] != 0:
        noise2.mul_(0.0).add_(torch.normal(torch.zeros_like(p.grad), group["variability"]))
        p.add_(noise2 - noise1)
        noise1.mul_(0.0).add_(noise2)
    else:
        p.add_(-noise1)
        noise1.mul_(0.0)


class Variable(Optimizer):
    """The loop of the original optimizers: for each parameter with a gradient, its state (step and
    the two noise buffers, plus `init_state`'s), the step count, the base update (`update`), then
    the noise stage (`variability_step`)."""

    def init_state(self, state, p):
        pass

    def update(self, p, grad, state, group):
        raise NotImplementedError

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    self.init_state(state, p)
                    state["noise1"] = torch.zeros_like(p.grad)
                    state["noise2"] = torch.zeros_like(p.grad)
                state["step"] += 1
                self.update(p, p.grad, state, group)
                variability_step(p, state, group)


class VSGD(Variable):
    """The original VSGD step (momentum 0, no weight decay, Gaussian noise): SGD, then the new noise
    in and the last one out, the noise reset every num_iters steps."""

    def __init__(self, params, lr, variability, num_iters):
        super().__init__(params, dict(lr=lr, variability=variability, num_iters=num_iters))

    def update(self, p, grad, state, group):
        p.add_(grad, alpha=-group["lr"])


class VAdam(Variable):
    """The original VAdam step (no AMSGrad, L2 weight decay 0 as its default path, Gaussian noise)."""

    def __init__(self, params, lr, variability, num_iters, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, variability=variability, num_iters=num_iters, betas=betas, eps=eps))

    def init_state(self, state, p):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def update(self, p, grad, state, group):
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = group["betas"]
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        grad.add_(p.data, alpha=0.0)  # the original's L2 term, run with its default 0
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-group["lr"] / bias_correction1)


class LeNet(nn.Module):
    def __init__(self, c=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc = nn.ModuleList([nn.Linear(16 * 6 * 6, 120), nn.Linear(120, 84), nn.Linear(84, classes)])

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.conv1(x)), 2)
        y = F.max_pool2d(F.relu(self.conv2(y)), 2).flatten(1)
        y = F.relu(self.fc[0](y))
        y = F.relu(self.fc[1](y))
        return self.fc[2](y)


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                  nn.Linear(256, 10)), (784,)),
    "lenet": (LeNet, (3, 32, 32)),
}
OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01),
    "vsgd": lambda ps: VSGD(ps, lr=0.01, variability=0.05, num_iters=469),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "vadam": lambda ps: VAdam(ps, lr=1e-3, variability=0.05, num_iters=469),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,lenet")
    ap.add_argument("--optimizers", default="sgd,vsgd,adam,vadam")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    for name in ("batch", "rounds", "steps", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be a positive integer, got {getattr(a, name)}")
    models, opts = a.models.split(","), a.optimizers.split(",")
    for m in models:
        if m not in MODELS:
            ap.error(f"--models: unknown model {m!r}, expected some of {','.join(MODELS)}")
    for o in opts:
        if o not in OPTIMIZERS:
            ap.error(f"--optimizers: unknown optimizer {o!r}, expected some of {','.join(OPTIMIZERS)}")
    dev, sync = setup_device(a.device, a.threads)
    for m in models:
        make, shape = MODELS[m]
        torch.manual_seed(0)
        x = torch.randn(a.batch, *shape).to(dev)
        y = (torch.arange(a.batch) % 10).to(dev)
        for o in opts:
            torch.manual_seed(0)
            model = make().to(dev)
            model.train()
            opt = OPTIMIZERS[o](model.parameters())

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

            ms, med = time_rounds(step, sync, a.warmup, a.rounds, a.steps)
            print(json.dumps({
                "model": m,
                "optimizer": o,
                "batch": a.batch,
                "device": device_name(a.device),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "rounds": a.rounds,
                "steps": a.steps,
                "ms": ms,
                "ms_per_step": med,
                "examples_per_s": a.batch * 1000 / med,
            }), flush=True)


if __name__ == "__main__":
    main()
