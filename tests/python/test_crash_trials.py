"""Ten SIGKILL trials of tools/crash_trials.py: `intedge train` killed at random moments
(mid-step, mid-checkpoint, mid-export) and resumed must end bit-identical to an uninterrupted run.
docs/reliability.md records the longer run."""
import subprocess
import sys

from conftest import ROOT


def test_ten_sigkill_trials_resume_bit_identical():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "crash_trials.py"), "--trials", "10", "--seed", "3"],
                         capture_output=True, text=True, timeout=600)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "10 of 10 trials resumed to a bit-identical end" in res.stdout
