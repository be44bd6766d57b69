/**
 * The example scripts lose nothing: every finished epoch's CSV row is on disk when the process is
 * killed (SIGKILL) mid-epoch, with a loadable last checkpoint; Ctrl-C (SIGINT) finishes the epoch,
 * checkpoints and exits 130; `--resume` then finishes the run with the rows an uninterrupted run
 * writes; `config.json` records the run; a reused `--out` of another configuration is refused
 * unless `--overwrite`.
 */
import assert from "node:assert/strict";
import { mlp } from "../mod.ts";
import { vsgd } from "../src/optim/mod.ts";
import { loadCheckpoint } from "../src/train/checkpoint.ts";
import { assertUsageErrors, exists, needRun, scriptRunner } from "./_examples.ts";

const labelNoise = scriptRunner("label_noise");
const robustness = scriptRunner("robustness");

/** A small label-noise run: 6 epochs of 512 examples, VSGD only, a checkpoint every epoch. */
const RUN = [
  "--optimizers",
  "vsgd",
  "--subset",
  "512",
  "--test-subset",
  "100",
  "--epochs",
  "6",
  "--lr-decay-epochs",
  "3",
  "--checkpoint-every",
  "1",
];
const TIMING = ["train_seconds", "eval_seconds", "wall_seconds"];

/** The CSV's rows without the timing columns (which differ between runs). */
function rowsOf(path: string): string[] {
  const [head, ...rows] = Deno.readTextFileSync(path).trimEnd().split("\n");
  const cols = head.split(",");
  const keep = cols.map((c, i) => (TIMING.includes(c) ? -1 : i)).filter((i) => i >= 0);
  return rows.map((r) => {
    const cells = r.split(",");
    assert.equal(cells.length, cols.length, `a complete row: ${r}`);
    return keep.map((i) => cells[i]).join(",");
  });
}

/** Starts the label-noise script; resolves once its CSV has `rows` data rows, then sends `signal`. */
async function interrupt(out: string, rows: number, signal: Deno.Signal) {
  const script = new URL("../examples/label_noise.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--allow-read", "--allow-write", script, ...RUN, "--out", out],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const csv = `${out}/vsgd_seed0.csv`;
  const deadline = Date.now() + 60_000;
  let seen = 0;
  while (seen < rows && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    try {
      seen = Deno.readTextFileSync(csv).split("\n").length - 2;
    } catch { /* not created yet */ }
  }
  child.kill(signal);
  const r = await child.output();
  return { code: r.code, signal: r.signal, stderr: new TextDecoder().decode(r.stderr), seen };
}

const template = () => ({
  params: mlp([784, 256, 256, 10], { seed: 0 }).params,
  // The optimizer of the script's run: vsgd with its defaults (numIters = steps per epoch = 4).
  optimizer: vsgd({ lr: 0.1, momentum: 0, weightDecay: 0, numIters: 4, variability: 0.05, seed: 0 }),
});

Deno.test("label_noise: SIGKILL mid-run keeps every finished row and a loadable checkpoint; SIGINT exits 130 with one; --resume finishes both as one run", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_resume_" });
  try {
    const [whole, killed, stopped] = await Promise.all([
      labelNoise([...RUN, "--out", `${tmp}/whole`]),
      interrupt(`${tmp}/killed`, 2, "SIGKILL"),
      interrupt(`${tmp}/stopped`, 1, "SIGINT"),
    ]);
    assert.equal(whole.code, 0, whole.stderr);
    const reference = rowsOf(`${tmp}/whole/vsgd_seed0.csv`);
    assert.equal(reference.length, 6);

    // SIGKILL: the rows written so far are complete and are the uninterrupted run's.
    assert.equal(killed.signal, "SIGKILL");
    const kept = rowsOf(`${tmp}/killed/vsgd_seed0.csv`);
    assert.ok(kept.length >= 2 && kept.length < 6, `${kept.length} rows`);
    assert.deepEqual(kept, reference.slice(0, kept.length));
    const ck = await loadCheckpoint(`${tmp}/killed/checkpoints/vsgd_seed0`, template());
    // The row of an epoch is written before its checkpoint: at most one row ahead of it.
    assert.ok(
      ck.epoch === kept.length || ck.epoch === kept.length - 1,
      `checkpoint ${ck.epoch}, ${kept.length} rows`,
    );
    assert.equal(ck.step, ck.epoch * 4);

    // SIGINT: the epoch under way finishes, its row and checkpoint are written, exit code 130.
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /interrupted: finishing the epoch and writing a checkpoint/);
    assert.match(stopped.stderr, /stopped; continue with --resume .*stopped/);
    const partial = rowsOf(`${tmp}/stopped/vsgd_seed0.csv`);
    assert.ok(partial.length >= 1 && partial.length < 6);
    const ck2 = await loadCheckpoint(`${tmp}/stopped/checkpoints/vsgd_seed0`, template());
    assert.equal(ck2.epoch, partial.length, "the last finished epoch is checkpointed");
    assert.equal(await exists(`${tmp}/stopped/summary.csv`), false, "no summary of a stopped run");

    // --resume DIR (the options come from DIR/config.json): the same rows as the run in one piece.
    const resumed = await Promise.all([
      labelNoise(["--resume", `${tmp}/killed`]),
      labelNoise(["--resume", `${tmp}/stopped`, "--checkpoint-every", "2"]),
    ]);
    for (const [i, dir] of ["killed", "stopped"].entries()) {
      assert.equal(resumed[i].code, 0, resumed[i].stderr);
      assert.deepEqual(rowsOf(`${tmp}/${dir}/vsgd_seed0.csv`), reference, dir);
      const summary = (d: string) =>
        Deno.readTextFileSync(`${tmp}/${d}/summary.csv`).split("\n")[1].split(",");
      // The summary's accuracy columns (not the timing of the last one) agree with the run in one piece.
      assert.deepEqual(summary(dir).slice(0, -1), summary("whole").slice(0, -1), `${dir} summary`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("examples: config.json records the run; a reused --out of another configuration needs --overwrite; --resume refuses other options", async () => {
  await needRun();
  const tmp = await Deno.makeTempDir({ prefix: "nvrm_out_" });
  try {
    const out = `${tmp}/out`;
    const small = [
      "--subset",
      "128",
      "--epochs",
      "1",
      "--test-subset",
      "50",
      "--sigmas",
      "0",
      "--seeds",
      "0",
    ];
    const first = await robustness([...small, "--optimizers", "sgd", "--out", out]);
    assert.equal(first.code, 0, first.stderr);
    const saved = JSON.parse(Deno.readTextFileSync(`${out}/config.json`));
    assert.equal(saved.script, "robustness");
    assert.deepEqual(saved.args, [...small, "--optimizers", "sgd"]);
    assert.equal(saved.config.lr, 0.1);
    assert.equal(saved.config.subset, 128);
    assert.deepEqual(saved.config.optimizers, [{ name: "sgd", label: "sgd" }]);
    const before = Deno.readTextFileSync(`${out}/sgd_seed0.csv`);

    // Another configuration in the same folder: refused, nothing touched.
    const stray = `${tmp}/stray`;
    await Deno.mkdir(stray);
    await Deno.writeTextFile(`${stray}/old.csv`, "a,b\n");
    const cases: [string[], RegExp][] = [
      [
        [...small, "--optimizers", "sgd", "--lr", "0.05", "--out", out],
        /--out ".*out" holds the results of another configuration \(lr is 0\.1 there, 0\.05 now\); give --overwrite/,
      ],
      [
        [...small, "--out", stray],
        /--out ".*stray" holds the results of another configuration \(old\.csv without a config\.json\)/,
      ],
      [
        ["--resume", out, "--lr", "0.05"],
        /--resume: the options differ from the run's \(lr is 0\.1 there, 0\.05 now\)/,
      ],
      [["--resume", out, "--out", `${tmp}/x`], /--resume continues the run in its own folder: omit --out/],
      [["--resume", `${tmp}/none`], /--resume ".*none": no config\.json there/],
      [
        ["--checkpoint-every", "1.5", "--out", `${tmp}/y`],
        /--checkpoint-every must be an integer >= 0, got "1.5"/,
      ],
    ];
    const runs = await Promise.all(cases.map(([args]) => robustness(args)));
    assertUsageErrors(runs, cases, /^robustness: .* \(see --help\)$/);
    assert.equal(Deno.readTextFileSync(`${out}/sgd_seed0.csv`), before);
    assert.deepEqual([...Deno.readDirSync(stray)].map((e) => e.name), ["old.csv"]);
    assert.equal(await exists(`${tmp}/y`), false);

    // The same configuration again (another --backend/--checkpoint-every is the same run): allowed;
    // another one with --overwrite: allowed, the old results are replaced.
    const [again, other, over] = await Promise.all([
      robustness([...small, "--optimizers", "sgd", "--checkpoint-every", "1", "--out", out]).then(async (
        a,
      ) => [
        a,
        await robustness([...small, "--optimizers", "sgd", "--lr", "0.05", "--overwrite", "--out", out]),
      ]),
      robustness([...small, "--overwrite", "--out", stray]),
    ]).then(([[a, b], c]) => [a, b, c]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/config.json`)).config.lr, 0.05);
    assert.equal(over.code, 0, over.stderr);
    assert.equal(await exists(`${stray}/old.csv`), false, "--overwrite removed the old results");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
