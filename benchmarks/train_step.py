"""Training-step throughput: the full TrajSV step vs the PyTorch peer, in one run; prints one JSON object.

Model and loss at paper dimensions (configs/paper.py with model.vocab_size=4096, model.visual_dim=512: 18,711,936
parameters on both sides). Data: the real videos of the bundled SkillCorner match at the paper shape (n=16 clips of
m=16 one-second segments): the match is ingested, tokenized and written to TFRecords in a temporary folder with
trajsv_jax.prepare, the train split's examples are read back, tiled to the global batch, and every valid clip gets a
random 512-d visual vector (the peer also uses randn visual features). The vocabulary is the match's real one.

Measured, per global batch (--batches), one after another, never concurrently:
1. ours, full: `trajsv_trainer.compile_steps(...)[0]`, what `trajsv train` runs: intra- and inter-clip variants made on
   device from the global batch, re-tokenization of the intra-clip variant against the vocabulary, the 3 views
   through the model (dropout on), triple loss, backward, SGD-momentum update. Compiled ahead of time (compile time
   and XLA's memory analysis reported), then the median of --steps timed steps after --warmup, each ended by
   `jax.block_until_ready` on the new state.
2. ours, peer-equivalent: the same model, loss and optimizer on 3 views given ready-made (made once, untimed, by
   `trajsv_trainer.make_views`): exactly the work the peer's step does.
3. breakdown: `trajsv_trainer.make_views` alone (variants + re-tokenization + stacking) and `variants.retokenize` alone.
4. the peer: `--peer` (../shared/peers/torch_trajsv.py) run as a subprocess with --batch B --steps --warmup; its
   printed videos/s, torch thread count, parameter count and loss are parsed. It times its own step (forward of its
   3 ready-made random variants, loss, backward, SGD) the same way: median of the timed steps.
Ratios are ours / peer in videos/s (> 1: ours faster). Smaller batches run more steps (--steps x largest batch / B,
so each measurement takes about the same time).

--scaling: the full step at 1, 2, 4, 8 virtual CPU devices (one subprocess each, XLA_FLAGS
--xla_force_host_platform_device_count=D), global batch 16 x D (weak scaling), per-device videos/s. On a machine with
fewer cores than devices, the virtual devices share the same cores: this measures the sharding overhead (ideal: flat
total videos/s), not a speed-up.
--memory: per global batch (32, 64, 128, 256), in a fresh subprocess each: XLA's compiled memory analysis of the full
step (temp + argument + output bytes; the output aliases the donated state), the XLA temp bytes of the peer-equivalent
step and of make_views alone, and the process's peak RSS after compiling and running one step: ru_maxrss and VmHWM
(on Linux ru_maxrss survives fork + exec, so a subprocess's starts at its parent's peak; VmHWM is its own).

Also reported: XLA's flop count of each compiled function (cost analysis), CPU time / wall time while timing
(cpu_per_wall: about the core count when nothing else runs; much lower means another process took cores), and the
1-minute load average at the start and the end. Timings on a shared machine are only as good as these say.

Run time on 2 cores: defaults ~10 min (data ~10 s; compiles ~20-30 s each); --scaling ~5 min more, --memory ~6 min
more; --quick (batch 8, 1 step) ~2 min.

Usage, from the repository root: python -m benchmarks.train_step [--scaling] [--memory] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from trajsv_jax import config as config_lib  # noqa: E402
from trajsv_jax.models import TrajSV, count_params  # noqa: E402
from trajsv_jax.training import sharding, steps, variants  # noqa: E402
from trajsv_jax.training import trajsv as trajsv_trainer  # noqa: E402

PEER = "../shared/peers/torch_trajsv.py"
OVERRIDES = ("--config.model.vocab_size=4096", "--config.model.visual_dim=512")
NOTE = (
    "full = what `trajsv train` runs: on-device intra-/inter-clip variants from the global batch + re-tokenization "
    "against the vocabulary + 3 views forward/backward + SGD; peer-equivalent = the same model, loss and SGD on 3 "
    "ready-made views, the work the peer's step does (the peer's 3 variants are random and made before timing)"
)
MEMORY_NOTE = (
    "one fresh process per batch, 1 device; memory_analysis of the compiled full step (its output aliases the donated "
    "state: alias_bytes); peak RSS after compiling and running one step, as ru_maxrss and VmHWM (ru_maxrss starts at "
    "the parent's peak, see rss_mb); rss_before_compile: after imports, data and batch; temp_mb: XLA temp buffers of "
    "the full step, the peer-equivalent step and make_views alone"
)


# ---------------------------------------------------------------------------------------------------------------- data


def prepare_data(root: Path) -> Path:
    """The bundled match → store → tokens → TFRecords (n=16 clips per video) under `root`; the dataset folder."""
    from trajsv_jax import prepare
    from trajsv_jax.data import ingest, store

    frames = ingest.read_skillcorner(*ingest.bundled_skillcorner_files())
    source, _ = store.source_from_frames(frames, "skillcorner_2417")
    store.write_source(root / "store", source)
    prepare.tokenize_store(root / "store", split=prepare.Split(16))
    prepare.write_dataset(root / "store", root / "tfrecords")
    return root / "tfrecords"


def train_examples(data_dir: Path, example) -> dict[str, np.ndarray]:
    """Every example of the train split, as numpy (int64 fields as int32, as JAX without x64 takes them)."""
    from input_pipeline import reader

    batches = list(reader.ordered_batches(reader.tfrecord_source(data_dir, "train", example), example, 1024))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def make_batch(examples: dict[str, np.ndarray], size: int, visual_dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`size` videos: the examples tiled; a randn visual vector on every valid clip (visual_mask = clip_mask)."""
    index = np.arange(size) % len(examples["clip_mask"])
    batch = {k: v[index] for k, v in examples.items()}
    mask = batch["clip_mask"]
    visual = np.random.default_rng(seed).standard_normal((*mask.shape, visual_dim), np.float32)
    return batch | {"visual": visual * mask[..., None], "visual_mask": mask.copy()}


def load_setup(data_dir: Path):
    config = config_lib.load_config(str(REPO / "configs" / "paper.py"), [f"--config.data_dir={data_dir}", *OVERRIDES])
    return config, trajsv_trainer.make_setup(config)


# -------------------------------------------------------------------------------------------------------------- timing


def median_seconds(step: Callable[[], object], warmup: int, steps: int) -> tuple[float, list[float], float]:
    """Median wall time of `steps` calls of `step` (each blocked on its result) after `warmup` calls, the times, and
    this process's CPU time over wall time while timing (about the core count when nothing else runs)."""
    for _ in range(warmup):
        jax.block_until_ready(step())
    times = []
    cpu = time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, (time.process_time() - cpu) / sum(times)


def ready_views_step(state: steps.TrainState, views: dict, *, model, tx, step: trajsv_trainer.StepConfig):
    """The peer's work: 3 ready-made views [B * 3, ...] → model (dropout on) → triple loss → gradients → SGD."""
    rng, dropout = jax.random.split(state.rng)

    def loss(params):
        v = model.apply({"params": params}, views, deterministic=False, rngs={"dropout": dropout})
        return step.loss_terms(v.reshape(-1, 3, v.shape[-1]))["loss"]

    value, grads = jax.value_and_grad(loss)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), value


class Bench:
    """Model, optimizer, mesh, vocabulary and the train examples of one process."""

    def __init__(self, data_dir: Path, examples: dict[str, np.ndarray] | None, devices: int | None = None):
        self.config, self.setup = load_setup(data_dir)
        self.examples = examples
        self.mesh = sharding.make_mesh(devices)
        self.model, self.tx = TrajSV(self.setup.model), trajsv_trainer.make_optimizer(self.config)
        self.vocab = steps.replicate(tuple(np.asarray(x) for x in self.setup.vocab.device_arrays()), self.mesh)
        s = self.setup
        self.init = jax.jit(
            functools.partial(trajsv_trainer.init_state, self.model, self.tx, s.example, s.step, self.config.seed),
            out_shardings=sharding.replicated(self.mesh),
        )

    def batch(self, size: int) -> dict[str, jax.Array]:
        host = make_batch(self.examples, size, self.setup.model.visual_dim)
        return jax.device_put(host, sharding.batch_sharding(self.mesh))

    def compile_full(self, batch):
        """The full step compiled ahead of time, its compile seconds and a fresh state."""
        state = self.init()
        start = time.perf_counter()
        train_fn, _ = trajsv_trainer.compile_steps(self.model, self.tx, self.setup.step, self.mesh, state)
        compiled = train_fn.lower(state, batch, self.vocab).compile()
        return compiled, time.perf_counter() - start, state

    def full(self, batch, warmup: int, steps: int) -> dict:
        compiled, compile_s, state = self.compile_full(batch)
        box = {"state": state}

        def step():
            box["state"], box["metrics"] = compiled(box["state"], batch, self.vocab)
            return box["state"]

        median, times, cpu = median_seconds(step, warmup, steps)
        metrics = jax.device_get(box["metrics"])
        return {
            **timing(len(batch["clip_mask"]), median, times, cpu),
            "compile_s": round(compile_s, 2),
            "gflop": gflop(compiled),
            "loss": float(metrics["loss"]),
            "intra_tokens_changed": round(float(metrics["intra_tokens_changed"]), 4),
            "memory_analysis": memory(compiled),
            "params": count_params(box["state"].params),
        }

    def compile_views(self, batch):
        """`trajsv_trainer.make_views` alone (variants + re-tokenization + stacking), compiled for `batch`."""
        make_views = jax.jit(functools.partial(trajsv_trainer.make_views, step=self.setup.step))
        return make_views.lower(jax.random.PRNGKey(1), batch, self.vocab).compile()

    def compile_peer_equivalent(self, batch):
        """`ready_views_step` compiled ahead of time, its compile seconds, a fresh state and the views it takes."""
        views, _ = self.compile_views(batch)(jax.random.PRNGKey(1), batch, self.vocab)
        fn = jax.jit(
            functools.partial(ready_views_step, model=self.model, tx=self.tx, step=self.setup.step),
            out_shardings=(sharding.replicated(self.mesh), sharding.replicated(self.mesh)),
            donate_argnums=0,
        )
        state = self.init()
        start = time.perf_counter()
        compiled = fn.lower(state, views).compile()
        return compiled, time.perf_counter() - start, state, views

    def peer_equivalent(self, batch, warmup: int, steps: int) -> dict:
        compiled, compile_s, state, views = self.compile_peer_equivalent(batch)
        box = {"state": state}

        def step():
            box["state"], box["loss"] = compiled(box["state"], views)
            return box["state"]

        median, times, cpu = median_seconds(step, warmup, steps)
        return {
            **timing(len(batch["clip_mask"]), median, times, cpu),
            "compile_s": round(compile_s, 2),
            "gflop": gflop(compiled),
            "loss": float(box["loss"]),
        }

    def breakdown(self, batch, warmup: int, steps: int) -> dict:
        """The step's data-side work alone: make_views (variants + re-tokenize + stacking) and re-tokenize alone."""
        s, key = self.setup.step, jax.random.PRNGKey(1)
        views = self.compile_views(batch)
        retok = jax.jit(functools.partial(variants.retokenize, cell=s.cell)).lower(batch, *self.vocab).compile()
        out = {}
        for name, compiled, call in (
            ("make_views", views, lambda: views(key, batch, self.vocab)),
            ("retokenize", retok, lambda: retok(batch, *self.vocab)),
        ):
            median, _, _ = median_seconds(call, max(warmup, 1), steps)
            out[f"{name}_ms"] = round(median * 1e3, 1)
            out[f"{name}_gflop"] = gflop(compiled)
        return out


def timing(batch: int, median: float, times: list[float], cpu_per_wall: float) -> dict:
    return {
        "median_step_ms": round(median * 1e3, 1),
        "videos_per_s": round(batch / median, 2),
        "steps_timed": len(times),
        "step_ms": [round(t * 1e3, 1) for t in times],
        "cpu_per_wall": round(cpu_per_wall, 2),
    }


def gflop(compiled) -> float | None:
    """XLA's flop count of a compiled function (its cost analysis), in GFLOP."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return round(cost["flops"] / 1e9, 2) if cost and "flops" in cost else None


def memory(compiled) -> dict | None:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    fields = ("temp", "argument", "output", "alias", "generated_code")
    out = {f"{f}_bytes": int(getattr(analysis, f"{f}_size_in_bytes")) for f in fields}
    out["temp_argument_output_mb"] = round((out["temp_bytes"] + out["argument_bytes"] + out["output_bytes"]) / 2**20, 1)
    return out


def rss_mb() -> dict[str, float]:
    """Peak resident memory of this process, MiB: ru_maxrss, and VmHWM where /proc has it (Linux).

    On Linux ru_maxrss survives fork + exec: a subprocess starts with its parent's peak (here the parent's ~2 GB).
    VmHWM belongs to the process's own address space, so it is the subprocess's own peak.
    """
    out = {"ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # KiB on Linux
    status = Path("/proc/self/status")
    if status.exists():
        hwm = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        out["vm_hwm_mb"] = round(int(hwm[1]) / 1024, 1) if hwm else None
    return out


# ---------------------------------------------------------------------------------------------------------------- peer


def run_peer(peer: Path, batch: int, warmup: int, steps: int) -> dict:
    """The peer's videos/s at `batch`, or {"error": why} when it cannot run."""
    if importlib.util.find_spec("torch") is None:
        return {"error": "torch is not installed in this environment"}
    if not peer.is_file():
        return {"error": f"{peer} not found"}
    cmd = [sys.executable, str(peer), "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup)]
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    head = re.search(r"torch (\S+) threads (\d+) params (\d+)", proc.stdout)
    line = re.search(r"median step ([\d.]+) ms, ([\d.]+) videos/s, loss (\S+)", proc.stdout)
    if not (head and line):
        return {"error": f"unexpected output: {proc.stdout.strip()!r}"}
    return {
        "median_step_ms": float(line[1]),
        "videos_per_s": float(line[2]),
        "steps_timed": steps,
        "loss": float(line[3]),
        "torch": head[1],
        "threads": int(head[2]),
        "params": int(head[3]),
        "wall_s": round(wall, 1),
        "cpu_per_wall": round(cpu_s / wall, 2),  # whole process, start-up included
    }


# ------------------------------------------------------------------------------------------------------------- workers


def worker(args) -> dict:
    """One measurement in this (fresh) process: the full step on all visible devices at --batch."""
    with np.load(args.examples) as data:
        examples = dict(data)
    bench = Bench(args.data_dir, examples)
    batch = bench.batch(args.batch)
    rss_before = rss_mb()
    if args.worker == "memory":
        views, peer_equivalent = bench.compile_views(batch), bench.compile_peer_equivalent(batch)[0]
        compiled, _, state = bench.compile_full(batch)
        jax.block_until_ready(compiled(state, batch, bench.vocab))
        return {
            "global_batch": args.batch,
            "memory_analysis": memory(compiled),
            "peak_rss": rss_mb(),
            "rss_before_compile": rss_before,
            "temp_mb": {
                "full_step": round(compiled.memory_analysis().temp_size_in_bytes / 2**20, 1),
                "peer_equivalent_step": round(peer_equivalent.memory_analysis().temp_size_in_bytes / 2**20, 1),
                "make_views": round(views.memory_analysis().temp_size_in_bytes / 2**20, 1),
            },
        }
    result = bench.full(batch, args.warmup, args.steps)
    devices = jax.device_count()
    return {
        "devices": devices,
        "global_batch": args.batch,
        "median_step_ms": result["median_step_ms"],
        "videos_per_s": result["videos_per_s"],
        "videos_per_s_per_device": round(result["videos_per_s"] / devices, 2),
        "compile_s": result["compile_s"],
        "steps_timed": result["steps_timed"],
        "cpu_per_wall": result["cpu_per_wall"],
    }


def spawn(mode: str, devices: int, batch: int, data: dict, warmup: int = 0, steps: int = 1) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--worker", mode, "--batch", str(batch)]
    cmd += ["--data-dir", str(data["dir"]), "--examples", str(data["examples"])]
    cmd += ["--warmup", str(warmup), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        return {"devices": devices, "global_batch": batch, "error": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------- main


def machine() -> dict:
    return describe(("jax", "jaxlib", "flax", "optax", "torch")) | {
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}"
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="32,128", help="global batch sizes, comma-separated (default 32,128)")
    p.add_argument("--steps", type=int, default=3, help="timed steps at the largest batch (more at smaller ones)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (after compilation)")
    p.add_argument("--peer", default=PEER, help=f"the PyTorch peer, relative to the repository root ({PEER})")
    p.add_argument("--no-peer", action="store_true", help="skip the peer")
    p.add_argument("--scaling", action="store_true", help="also: full step at 1, 2, 4, 8 virtual devices")
    p.add_argument("--scaling-devices", default="1,2,4,8")
    p.add_argument("--per-device-batch", type=int, default=16, help="--scaling: global batch = this x devices")
    p.add_argument("--memory", action="store_true", help="also: compiled memory and peak RSS vs global batch")
    p.add_argument("--memory-batches", default="32,64,128,256")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 8, 1 step (1 warm-up)")
    p.add_argument("--worker", choices=["scaling", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--examples", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a)
    if a.quick:
        a.batches, a.steps, a.warmup = "8", 1, 1
        a.scaling_devices, a.per_device_batch, a.memory_batches = "1,2", 4, "8,16"
    batches = [int(b) for b in a.batches.split(",")]
    largest = max(batches)
    peer = (REPO / a.peer).resolve()
    start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data_dir = prepare_data(Path(tmp))
        bench = Bench(data_dir, None)
        bench.examples = train_examples(data_dir, bench.setup.example)
        data_s = time.perf_counter() - t0
        examples_file = Path(tmp) / "train_examples.npz"
        np.savez(examples_file, **bench.examples)
        out = {
            "benchmark": "train_step",
            "command": " ".join(["python -m benchmarks.train_step", *(sys.argv[1:] if argv is None else argv)]),
            "machine": machine(),
            "model": bench.setup.describe(),
            "data": {
                "source": "bundled SkillCorner match (kloppy's test files), real tokens and positions",
                "train_videos": len(bench.examples["clip_mask"]),
                "tiling": "the train videos repeated to fill the batch; randn visual vector per valid clip",
                "valid_clips_mean": round(float(bench.examples["clip_mask"].sum(1).mean()), 2),
                "vocabulary": {"tokens": bench.setup.vocab.num_tokens, "entries": len(bench.setup.vocab)},
                "prepare_s": round(data_s, 1),
            },
            "warmup": a.warmup,
            "note": NOTE,
            "results": {},
        }
        for size in batches:
            steps = max(a.steps, round(a.steps * largest / size))
            batch = bench.batch(size)
            row = {"steps": steps}
            row["ours_full"] = bench.full(batch, a.warmup, steps)
            row["ours_peer_equivalent"] = bench.peer_equivalent(batch, a.warmup, steps)
            row["breakdown"] = bench.breakdown(batch, a.warmup, steps)
            full_ms = row["ours_full"]["median_step_ms"]
            row["breakdown"] |= {
                "full_step_ms": full_ms,
                "peer_equivalent_step_ms": row["ours_peer_equivalent"]["median_step_ms"],
                "make_views_share_of_full": round(row["breakdown"]["make_views_ms"] / full_ms, 3),
            }
            del batch
            row["peer"] = {"skipped": "--no-peer"} if a.no_peer else run_peer(peer, size, a.warmup, steps)
            if "videos_per_s" in row["peer"]:
                pv = row["peer"]["videos_per_s"]
                row["ratio_full_vs_peer"] = round(row["ours_full"]["videos_per_s"] / pv, 3)
                row["ratio_peer_equivalent_vs_peer"] = round(row["ours_peer_equivalent"]["videos_per_s"] / pv, 3)
            out["results"][str(size)] = row
        first = out["results"][str(batches[0])]
        out["params"] = {"ours": first["ours_full"].pop("params"), "peer": first["peer"].get("params")}
        for row in out["results"].values():
            row["ours_full"].pop("params", None)
        out["losses_finite"] = all(
            np.isfinite(row[k]["loss"])
            for row in out["results"].values()
            for k in ("ours_full", "ours_peer_equivalent")
        )
        data = {"dir": data_dir, "examples": examples_file}
        if a.scaling:
            rows = [
                spawn("scaling", d, a.per_device_batch * d, data, a.warmup, a.steps)
                for d in (int(x) for x in a.scaling_devices.split(","))
            ]
            out["scaling"] = {
                "mode": f"weak: global batch = {a.per_device_batch} x devices, full step",
                "note": f"{os.cpu_count()} physical cores: the virtual CPU devices share them, so this measures the "
                "sharding overhead (ideal: total videos/s flat, per-device videos/s falling as 1/D), not a speed-up",
                "rows": rows,
            }
        if a.memory:
            out["memory"] = {
                "note": MEMORY_NOTE,
                "rows": [spawn("memory", 1, int(b), data) for b in a.memory_batches.split(",")],
            }
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)  # > cores: something else ran; timings suspect
    out["total_s"] = round(time.perf_counter() - start, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
