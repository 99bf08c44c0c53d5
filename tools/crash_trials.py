"""SIGKILL trials: `intedge train` is killed one to three times at random moments (a random delay
into the run: mid-step, mid-checkpoint, mid-export, mid-metrics write; or, through the fault
hooks of python/intedge/faults.py, after a random step or halfway through a checkpoint write),
then resumed with --resume until it finishes. Every trial must end bit-identical to one uninterrupted run: the final training state,
model.onnx, and metrics.jsonl without its timings.

  python tools/crash_trials.py --trials 100 --seed 1      # docs/reliability.md's figure
Needs the installed package (the `intedge` script beside this Python). Prints one line per trial
and a summary; exits 1 if any trial differs."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INTEDGE = str(Path(sys.executable).with_name("intedge"))
# 2 epochs of 45 steps, a checkpoint every 15 steps and at each epoch's end
STEPS = 90
TRAIN = ["train", str(ROOT / "models" / "mlp_digits.onnx"), "builtin:digits", "--epochs", "2", "--batch-size", "32",
         "--momentum", "0.9", "--weight-decay", "1e-4", "--seed", "5", "--checkpoint-every", "15", "--quiet"]


def outcome(run_dir):
    """What must match: the newest checkpoint's state, the exported model, the metrics."""
    from intedge import checkpoint as ckpt

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]
    return ckpt.load_latest(run_dir).state, (run_dir / "model.onnx").read_bytes(), metrics


def start(out, env=None):
    has_checkpoint = any((out / "checkpoints").glob("ckpt-*.iec")) if (out / "checkpoints").is_dir() else False
    args = TRAIN + ["--output-dir", str(out)] + (["--resume", str(out)] if has_checkpoint else [])
    return subprocess.Popen([INTEDGE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def timed(args):
    t0 = time.monotonic()
    res = subprocess.run([INTEDGE, *args], capture_output=True, text=True)
    return res, time.monotonic() - t0


def trial(out, rng, startup, duration):
    """Kills the run 1 to 3 times, then lets it finish. Returns the kills in words."""
    kills = []
    for _ in range(int(rng.integers(1, 4))):
        how = rng.random()
        if how < 0.25:  # torn checkpoint: the hook kills halfway through write N of the process
            n = int(rng.integers(1, 5))
            p = start(out, {"INTEDGE_FAULT_KILL_IN_CHECKPOINT": str(n)})
            p.wait()
            kills.append(f"checkpoint write {n}" if p.returncode == -signal.SIGKILL else f"(ended before write {n})")
        elif how < 0.6:  # between two steps, wherever the checkpoints stand (the run has STEPS steps)
            n = int(rng.integers(1, STEPS + 1))
            p = start(out, {"INTEDGE_FAULT_KILL_AT_STEP": str(n)})
            p.wait()
            kills.append(f"step {n}" if p.returncode == -signal.SIGKILL else f"(ended before step {n})")
        else:  # a random moment of the run, once it is past its imports
            delay = float(rng.uniform(startup, duration))
            p = start(out)
            try:
                p.wait(timeout=delay)
                kills.append(f"(ended before {delay:.2f} s)")
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills.append(f"{delay:.2f} s")
        if p.returncode not in (0, -signal.SIGKILL):
            raise RuntimeError(f"the run failed (exit {p.returncode}): {p.stderr.read()}")
    p = start(out)
    _, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"the final resume failed (exit {p.returncode}): {err}")
    return kills


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="intedge-crash-"))
    try:
        # the time to import and load the model (a run that stops at its missing data), then a whole run
        _, startup = timed(TRAIN[:2] + [str(work / "no-data"), "--output-dir", str(work / "startup")])
        ref, duration = timed(TRAIN + ["--output-dir", str(work / "reference")])
        if ref.returncode != 0:
            raise RuntimeError(f"the uninterrupted run failed: {ref.stderr}")
        expected = outcome(work / "reference")
        failures = 0
        for k in range(args.trials):
            out = work / f"trial-{k}"
            kills = trial(out, rng, startup, duration)
            same = outcome(out) == expected
            failures += not same
            print(f"trial {k + 1:3}: killed at {', '.join(kills)}: {'identical' if same else 'DIFFERS'}", flush=True)
            shutil.rmtree(out)
        print(f"{args.trials - failures} of {args.trials} trials resumed to a bit-identical end "
              f"(uninterrupted run {duration:.1f} s, {startup:.1f} s of it start-up)")
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
