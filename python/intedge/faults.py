"""Fault injection for the crash tests: each hook does nothing unless its variable is set.

INTEDGE_FAULT_KILL_AT_STEP=N         SIGKILL right after training step N
INTEDGE_FAULT_KILL_IN_CHECKPOINT=N   SIGKILL halfway through writing the N-th checkpoint of the process
"""
import os
import signal

KILL_AT_STEP = "INTEDGE_FAULT_KILL_AT_STEP"
KILL_IN_CHECKPOINT = "INTEDGE_FAULT_KILL_IN_CHECKPOINT"


def kill_if(variable, value):
    if os.environ.get(variable) == str(value):
        os.kill(os.getpid(), signal.SIGKILL)
