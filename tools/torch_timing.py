"""What the PyTorch twins of our benches (torch_resnet_bench.py, torch_train_bench.py) share: the
device setup (CUDA in float32 with TF32 off, the thread count) and the timing of rounds of steps,
each round ending with one wait for the device, as ours on WebGPU."""

import statistics
import time

import torch


def setup_device(name, threads):
    """The torch device `name` ("cpu" or "cuda", TF32 off) and its wait function; sets the threads."""
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch.cuda.is_available() is False (no CUDA GPU or a CPU-only torch)")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if name == "cuda" else (lambda: None)
    return torch.device(name), sync


def device_name(name):
    """The GPU's name on "cuda", else "cpu" (for the JSON lines)."""
    return torch.cuda.get_device_name() if name == "cuda" else "cpu"


def time_rounds(step, sync, warmup, rounds, steps, after_step=None):
    """`warmup` steps, then `rounds` rounds of `steps` steps, each ended by `sync()`: the ms per step
    of each round and their median. `after_step(result)` runs after each timed step (e.g. a CPU
    read-back of the loss)."""
    for _ in range(warmup):
        step()
    sync()
    ms = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            r = step()
            if after_step is not None:
                after_step(r)
        sync()
        ms.append((time.perf_counter() - t0) * 1000 / steps)
    return ms, statistics.median(ms)
