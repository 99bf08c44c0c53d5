"""The step profile (intedge_testing.h's ie_test_profile, Session.profile): where a step's time
goes per node and phase. It must not change a byte, and it must show a frozen prefix running its
forward only: no dX, dW or optimizer time for a node before the trainable blocks."""
import numpy as np
import torch

import intedge
from intedge.inspect_model import trainable_flags
from torch_models import ResNet8, export_training


def _resnet8():
    torch.manual_seed(0)
    return intedge.import_onnx(export_training(ResNet8(in_ch=1, width=8), torch.zeros(2, 1, 16, 16), dynamo=False,
                                               opset=13))


def _trainer(model, trainable=None, threads=1):
    flags = trainable_flags(model, trainable) if trainable else None
    return intedge.Trainer(model, batch_size=8, lr=0.05, momentum=0.9, seed=3, trainable=flags, threads=threads)


def _batch():
    rng = np.random.default_rng(5)
    return rng.standard_normal((8, 1, 16, 16)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int32)


def test_profiling_changes_no_byte_and_times_every_node():
    model = _resnet8()
    x, y = _batch()
    for threads in (1, 2):
        plain, profiled = _trainer(model, threads=threads).session, _trainer(model, threads=threads).session
        profiled.profile_start()
        for _ in range(3):
            plain.step(x, labels=y)
            profiled.step(x, labels=y)
        assert plain.digest() == profiled.digest()
        ns = profiled.profile()
        nodes = profiled.nodes()
        assert ns.shape == (len(nodes) + 1, 4, 5)
        fwd, dx, dw, opt = (ns[:-1, p, 0] for p in range(4))
        assert (fwd > 0).all()  # every node ran forward, the loss row too
        assert ns[-1, 0, 0] > 0
        convs = [i for i, (_, op) in enumerate(nodes) if op == "Conv"]
        assert (dw[convs] > 0).all() and (opt[convs] > 0).all() and (ns[convs, 0, 1] > 0).all()  # their GEMMs
        # each kind of work is timed inside its phase
        assert (ns[:, :, 1:].sum(axis=2) <= ns[:, :, 0]).all()


def test_frozen_prefix_runs_forward_only():
    model = _resnet8()
    x, y = _batch()
    s = _trainer(model, ["s3.*", "fc.*"]).session
    s.profile_start()
    for _ in range(2):
        s.step(x, labels=y)
    ns = s.profile()
    nodes = [name for name, _ in s.nodes()]
    first = next(i for i, n in enumerate(nodes) if "/s3/" in n)
    assert (ns[:first, 0, 0] > 0).all()
    assert not ns[:first, 1:, :].any(), "a frozen node ran a backward phase"
    assert ns[first:-1, 1:, 0].sum(axis=1).all(), "a trainable node ran no backward"
    # and the planner keeps nothing of the prefix for backward: its arena is the head-only one
    full = model_arena(model, None)
    assert model_arena(model, ["s3.*", "fc.*"]) < full


def model_arena(model, trainable):
    m = intedge.runtime.Model(model.iem)
    return m.arena_size(8, trainable=trainable_flags(model, trainable) if trainable else None)
