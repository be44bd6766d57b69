/**
 * Joins the device check's two training-step tables: ours on WebGPU (the JSON rows of
 * `bench/webgpu_train_bench.ts --json FILE`) and PyTorch's (the JSON lines of
 * `tools/torch_train_bench.py`, other lines ignored), and prints one line per model and optimizer
 * that both timed: ms/step of each, and ours/PyTorch as a speed ratio (PyTorch's time over ours:
 * above 1, ours is faster), with the WebGPU row's host ms/step (its JavaScript and encoding) and
 * submit ms/step (`queue.submit`, host work too on a GPU): where their sum nears the ms/step, the step
 * is bound by the host, not the GPU.
 *
 *   deno run --allow-read tools/device/train_ratios.ts OURS.jsonl TORCH.log
 *
 * @module
 */

interface Row {
  model: string;
  optimizer: string;
  batch: number;
  ms_per_step: number;
  device?: string;
  steps?: number;
  host_ms_per_step?: number;
  submit_ms_per_step?: number;
}

/** The JSON object lines of `text` that carry a training-step row. */
export function rows(text: string): Row[] {
  const out: Row[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      continue;
    }
    const o = r as Partial<Row>;
    if (typeof o.model === "string" && typeof o.optimizer === "string" && typeof o.ms_per_step === "number") {
      out.push(o as Row);
    }
  }
  return out;
}

/** The summary lines: one per (model, optimizer) timed by both, in the order of `ours`. */
export function ratioLines(ours: Row[], torch: Row[]): string[] {
  const lines: string[] = [];
  for (const o of ours) {
    if (o.device !== "webgpu") continue;
    const t = torch.find((r) => r.model === o.model && r.optimizer === o.optimizer && r.batch === o.batch);
    if (!t) continue;
    const host = o.host_ms_per_step === undefined
      ? ""
      : ` (host ${o.host_ms_per_step.toFixed(2)} ms${
        o.submit_ms_per_step === undefined ? "" : ` + submit ${o.submit_ms_per_step.toFixed(2)} ms`
      })`;
    lines.push(
      `${o.model} ${o.optimizer} batch ${o.batch} step: ours (WebGPU) ${
        o.ms_per_step.toFixed(3)
      } ms${host}, ` +
        `PyTorch ${t.device ?? "?"} ${t.ms_per_step.toFixed(3)} ms; ours/PyTorch speed ${
          (t.ms_per_step / o.ms_per_step).toFixed(2)
        }x`,
    );
  }
  return lines;
}

if (import.meta.main) {
  const [oursPath, torchPath] = Deno.args;
  if (!oursPath || !torchPath) {
    console.error("usage: deno run --allow-read tools/device/train_ratios.ts OURS.jsonl TORCH.log");
    Deno.exit(2);
  }
  const lines = ratioLines(rows(await Deno.readTextFile(oursPath)), rows(await Deno.readTextFile(torchPath)));
  if (lines.length === 0) {
    console.log(`train ratios: no (model, optimizer) timed in both ${oursPath} and ${torchPath}`);
  }
  for (const l of lines) console.log(l);
}
