"""AdamW in integers (runtime/src/optim.c): the optimizer alone against float64 torch.optim.AdamW
on exact gradients, whole training runs against float32 PyTorch from the same weights and
batches, Embedding rows stepped lazily, bit-exactness across kernel tiers and threads, and
bit-identical resume through the API and the CLI."""
import numpy as np
import pytest
import torch
from torch import nn

import intedge
from intedge import checkpoint as ckpt
from intedge import iem
from intedge.runtime import Model, Session, kernel_tiers
from conftest import ROOT, run_cli
from op_harness import Harness
from test_embedding import C, D, T, V, embedding_graph
from torch_models import export


def f32(v):
    """A hyper-parameter as the runtime holds it (it crosses the API as float32)."""
    return float(np.float32(v))


# ---- the optimizer alone, on exact gradients ---------------------------------------------------------

K, M, N = 24, 7, 5


def gemm_graph(rng):
    g = iem.Graph()
    g.input = g.add_tensor("x", iem.KIND_INPUT, (K,))
    g.add_tensor("w", iem.KIND_PARAM, (M, K), (rng.standard_normal((M, K)) * 0.2).astype(np.float32))
    g.add_tensor("b", iem.KIND_PARAM, (M,), (rng.standard_normal(M) * 0.1).astype(np.float32))
    g.add_tensor("y", iem.KIND_ACTIVATION, (M,))
    g.add_node("fc", iem.OP_GEMM, ["x", "w", "b"], ["y"], [1])
    g.output = g.index["y"]
    return g


def adamw_harness(graph, batch, lr, betas, eps, wd):
    h = Harness(graph, batch)
    h.session = Session(h.model, batch_size=batch, lr=lr, seed=3, keep_tensors=True, optimizer="adamw", betas=betas,
                        eps=eps, weight_decay=wd)
    return h


def exact_gradient_run(lr, betas, eps, wd, steps, seed=0):
    """Steps a Gemm whose weight gradients dY^T X are exact (integer inputs, an int8 dY whose scale
    moves by 2^21 over the run, four input columns of -1/0/1 so their gradients are tiny), and
    torch.optim.AdamW in float64 on the same gradients from the same weights. Returns, per
    parameter, the updates (integer, float64)."""
    rng = np.random.default_rng(seed)
    h = adamw_harness(gemm_graph(rng), N, lr, betas, eps, wd)
    start = [h.session.param_fixed(i) for i in range(2)]
    ref = [torch.tensor(q * 2.0**e, dtype=torch.float64, requires_grad=True) for q, e in start]
    opt = torch.optim.AdamW(ref, lr=f32(lr), betas=(f32(betas[0]), f32(betas[1])), eps=f32(eps), weight_decay=f32(wd))
    for t in range(steps):
        x = rng.integers(-127, 128, (N, K)).astype(np.float32)
        x[0, 0] = 100  # the batch maximum has 7 bits: the int8 input is x itself
        x[:, :4] = rng.integers(-1, 2, (N, 4))
        dy = rng.integers(-127, 128, (N, M)).astype(np.int8)
        dy_e = -12 - (t % 7) * 3
        h.step(x, dy, dy_e)
        xq, xe = h.tensor("x")
        assert xe == 0 and np.array_equal(xq, x)
        d = dy.astype(np.float64) * 2.0**dy_e
        ref[0].grad, ref[1].grad = torch.tensor(d.T @ x.astype(np.float64)), torch.tensor(d.sum(0))
        opt.step()
    out = []
    for i, (q0, e0) in enumerate(start):
        q, e = h.session.param_fixed(i)
        w0 = q0 * 2.0**e0
        out.append((q * 2.0**e - w0, ref[i].detach().numpy() - w0))
    return out


CONFIGS = {
    "defaults": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, wd=0.01, steps=30),
    "eps_matters": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-3, wd=0.01, steps=30),
    "beta1_0": dict(lr=1e-2, betas=(0.0, 0.99), eps=1e-8, wd=0.0, steps=30),
    "long": dict(lr=1e-3, betas=(0.8, 0.95), eps=1e-6, wd=0.1, steps=200),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_adamw_matches_float64_torch_on_exact_gradients(name, capsys):
    """The integer AdamW update against torch.optim.AdamW in float64 on the same exact gradients:
    the accumulated update agrees within 1e-5 relative (measured: below 1e-6), and every element
    within 1e-5 of lr x steps (the largest total move an element can make, about)."""
    cfg = CONFIGS[name]
    for (ours, ref), what in zip(exact_gradient_run(**cfg), ("weight", "bias")):
        rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
        elem = np.abs(ours - ref).max() / (f32(cfg["lr"]) * cfg["steps"])
        with capsys.disabled():
            print(f"\n[AdamW {name}, {what}] relative error of the update {rel:.2e}, largest element error "
                  f"{elem:.2e} of lr x steps")
        assert rel < 1e-5 and elem < 1e-5


def test_eps_counts_in_the_exact_gradient_check():
    """In "eps_matters" eps moves the reference far beyond the check's tolerance, so an integer
    AdamW that ignored eps would fail it."""
    base = CONFIGS["eps_matters"]
    ours = exact_gradient_run(**base)[0][0]
    other_eps = exact_gradient_run(**{**base, "eps": 1e-8})[0][1]
    assert np.linalg.norm(ours - other_eps) / np.linalg.norm(other_eps) > 1e-2


# ---- Embedding rows: lazy Adam on the rows a batch used ------------------------------------------------

def table_state(session):
    """The Embedding table's (parameter 0) exponents and master, m, v from the training state
    (version 2, docs/format.md)."""
    blob = session.save_state()
    numel, _, we, me, ve, _ = np.frombuffer(blob, "<i4", 6, 40)
    off = 64
    w = np.frombuffer(blob, "<i4", numel, off)
    m = np.frombuffer(blob, "<i4", numel, off + 4 * numel)
    v = np.frombuffer(blob, "<i8", numel, off + 8 * numel)
    return (we, me, ve), w.reshape(V, D), m.reshape(V, D), v.reshape(V, D)


def test_embedding_rows_step_lazily_like_float64(rng):
    """The table's rows against a float64 lazy AdamW fed the exact row gradients the runtime
    received: a used row steps (decay, m, v, bias corrections at the global step), a row no sample
    used keeps its master, m and v bytes, and its waiting state is read correctly when a later
    batch uses it, after the table's exponents moved."""
    lr, (b1, b2), eps, wd = 2e-2, (0.9, 0.99), 1e-6, 0.05
    h = adamw_harness(embedding_graph(rng), 3, lr, (b1, b2), eps, wd)
    q0, e0 = h.session.param_fixed(0)
    w = q0 * 2.0**e0
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    lr, b1, b2, eps, wd = map(f32, (lr, b1, b2, eps, wd))
    data = np.random.default_rng(8)
    moved = kept = 0
    for t in range(1, 13):
        ids = data.integers(0, 12 if t <= 6 else V, (3, T)).astype(np.int32)  # rows 12.. wait 6 steps
        exps, *before = table_state(h.session)
        h.step(ids, data.integers(-127, 128, (3, C)).astype(np.int8), -4 - t % 5)
        grad = np.zeros_like(w)
        np.add.at(grad, ids.reshape(-1), h.value("emb", grad=True).reshape(-1, D))
        used = np.unique(ids)
        w[used] *= 1 - lr * wd
        m[used] = b1 * m[used] + (1 - b1) * grad[used]
        v[used] = b2 * v[used] + (1 - b2) * grad[used] ** 2
        w[used] -= lr * (m[used] / (1 - b1**t)) / (np.sqrt(v[used] / (1 - b2**t)) + eps)
        exps_after, *after = table_state(h.session)
        unused = np.setdiff1d(np.arange(V), used)
        for k in range(3):  # an array whose exponent held keeps the bytes of the rows left alone
            if exps_after[k] == exps[k]:
                assert np.array_equal(after[k][unused], before[k][unused])
                kept += 1
            else:
                moved += 1
        q, e = h.session.param_fixed(0)
        np.testing.assert_allclose(q * 2.0**e, w, rtol=0, atol=1e-4 * lr + 2.0**(e + 1))
    assert kept and moved  # both cases ran


# ---- whole training runs against float32 PyTorch --------------------------------------------------------

def digits_nets():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    return {"mlp": mlp, "cnn": cnn}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_training_follows_torch_adamw(arch, digits, capsys):
    """30 steps on real digits, from the same weights and batches as float32 torch.optim.AdamW
    (lr 3e-3, weight decay 0.01): the losses agree step by step, and each parameter's total update
    points the same way (cosine) with the same length. What differs is the int8 forward and
    backward: Adam divides every element's step by its own gradient scale, so the noise of small
    gradients (the convolution biases) shows most."""
    net = digits_nets()[arch]
    model = export(net, torch.zeros(2, 1, 8, 8), dynamo=False, opset=13)
    lr, wd, steps, bs = 3e-3, 0.01, 30, 32
    t = intedge.Trainer(model, batch_size=bs, lr=lr, optimizer="adamw", weight_decay=wd, seed=0)
    start = t.state_dict()
    opt = torch.optim.AdamW(net.parameters(), lr=f32(lr), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8),
                            weight_decay=f32(wd))
    x = digits.x_train.reshape(-1, 1, 8, 8).astype(np.float32)
    xp, yp = t.prepare(x, digits.y_train, "train")
    order = t.batch_order(len(x), 0)
    ours, theirs = [], []
    for s in range(steps):
        idx = order[s * bs:(s + 1) * bs]
        ours.append(t.session.step(xp[idx], labels=yp[idx])[0] / bs)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.tensor(x[idx])), torch.tensor(digits.y_train[idx]))
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 0.02
    assert ours[-1] < ours[0] - 0.05
    trained = t.state_dict()
    lines = []
    for name, p in net.named_parameters():
        du, dr = (trained[name] - start[name]).ravel(), (p.detach().numpy() - start[name]).ravel()
        cos = du @ dr / np.linalg.norm(du) / np.linalg.norm(dr)
        ratio = np.linalg.norm(du) / np.linalg.norm(dr)
        rel = np.linalg.norm(du - dr) / np.linalg.norm(dr)
        lines.append(f"{name} cos {cos:.4f} length {ratio:.3f} rel {rel:.3f}")
        assert cos > 0.9 and 0.85 < ratio < 1.15 and rel < 0.45, lines[-1]
    with capsys.disabled():
        print(f"\n[AdamW {arch} vs torch, {steps} steps] loss {ours[0]:.4f} -> {ours[-1]:.4f} (torch {theirs[0]:.4f} "
              f"-> {theirs[-1]:.4f}); " + "; ".join(lines))


# ---- bit-exactness and resume ---------------------------------------------------------------------------

def wide_mlp():
    """64 -> 1024 -> 10: a 65,536-weight layer, whose optimizer passes split over the pool."""
    import build_mlp
    return build_mlp.build_mlp([64, 1024, 10], input_shape=(1, 8, 8), seed=2)


def test_bit_exact_across_tiers_and_threads(digits):
    for model in (wide_mlp(), export(digits_nets()["cnn"], torch.zeros(2, 1, 8, 8), dynamo=False, opset=13)):
        digests = set()
        for tier in kernel_tiers():
            for threads in (1, 2, 3):
                t = intedge.Trainer(model, batch_size=16, optimizer="adamw", weight_decay=0.01, seed=9, kernels=tier,
                                    threads=threads)
                t.fit(digits.x_train[:96], digits.y_train[:96], epochs=1, progress=False)
                digests.add(t.session.digest())
        assert len(digests) == 1


def test_save_and_resume_through_the_api_is_bit_identical(digits):
    """Six steps, save, six more; against a fresh session that loads the saved state and takes the
    same six: the same state bytes. Also for a model with an Embedding table (rows)."""
    x, y = digits.x_train[:192].reshape(-1, 64).astype(np.float32), digits.y_train[:192]
    rows = np.random.default_rng(3)
    ids, labels = rows.integers(0, V, (12, 4, T)), rows.integers(0, C, (12, 4))
    cases = [(Model(intedge.import_onnx(wide_mlp()).iem), [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
                                                             for i in range(12)]),
             (Model(iem.serialize(embedding_graph(np.random.default_rng(1), const_positions=True))),
              list(zip(ids, labels)))]
    for model, batches in cases:
        def session():
            return Session(model, batch_size=16, lr=3e-3, optimizer="adamw", betas=(0.9, 0.98), eps=1e-7,
                           weight_decay=0.02, seed=1)
        a = session()
        for xb, yb in batches[:6]:
            a.step(xb, labels=yb)
        mid = a.save_state()
        assert mid[4] == 2  # AdamW's state version
        for xb, yb in batches[6:]:
            a.step(xb, labels=yb)
        b = session()
        b.load_state(mid)
        for xb, yb in batches[6:]:
            b.step(xb, labels=yb)
        assert a.save_state() == b.save_state()
        sgd = Session(model, batch_size=16, lr=0.1)
        with pytest.raises(intedge.IntedgeError, match="saved by an AdamW session; this session runs SGD"):
            sgd.load_state(mid)


TRAIN = ["train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", "--batch-size", "32", "--optimizer", "adamw",
         "--lr", "2e-3", "--betas", "0.85,0.995", "--eps", "1e-7", "--weight-decay", "0.05", "--seed", "4", "--quiet"]


def test_cli_resume_is_bit_identical(tmp_path):
    """`intedge train --optimizer adamw` for 2 epochs, against 1 epoch (checkpoints every 20 steps)
    then --resume from its mid-epoch checkpoint to 2: the same state and model. The checkpoint
    records the optimizer and its hyper-parameters."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cli(*TRAIN, "--epochs", "2", "--output-dir", straight).returncode == 0
    r = run_cli(*TRAIN, "--epochs", "1", "--checkpoint-every", "20", "--keep-checkpoints", "10", "--output-dir", resumed)
    assert r.returncode == 0, r.stderr
    mid = ckpt.list_checkpoints(resumed / "checkpoints")[-2]  # step 40 of the epoch's 45
    assert mid.name == "ckpt-00000040.iec"
    for later in ckpt.list_checkpoints(resumed / "checkpoints")[-1:]:
        later.unlink()
    cfg = ckpt.load(mid).meta["config"]
    assert (cfg["optimizer"], cfg["betas"], cfg["eps"], cfg["weight_decay"]) == ("adamw", [0.85, 0.995], 1e-7, 0.05)
    r = run_cli(*TRAIN[:3], "--epochs", "2", "--quiet", "--resume", mid, "--output-dir", resumed)
    assert r.returncode == 0, r.stderr
    assert ckpt.load_latest(resumed).state == ckpt.load_latest(straight).state
    assert (resumed / "model.onnx").read_bytes() == (straight / "model.onnx").read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "adam"], "unknown --optimizer 'adam'; choose one of sgd, adamw"),
    (["--optimizer", "adamw", "--betas", "0.9"], "--betas takes two numbers B1,B2"),
    (["--optimizer", "adamw", "--betas", "0.9,zero"], "--betas takes two numbers B1,B2 and --eps a number"),
    (["--optimizer", "adamw", "--betas", "1,0.999"], "0 <= beta1 < 1 and 0 < beta2 < 1"),
    (["--optimizer", "adamw", "--betas", "0.99,0.95"], "beta1^2 < beta2"),
    (["--optimizer", "adamw", "--eps=-1e-8"], "eps must be a finite number >= 0"),
    (["--optimizer", "adamw", "--momentum", "0.9"], "AdamW takes betas, not momentum"),
])
def test_bad_optimizer_options_are_one_line(tmp_path, args, message):
    r = run_cli("train", ROOT / "models" / "mlp_digits.onnx", "builtin:digits", *args, "--output-dir", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("intedge: error:") and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_trainer_refuses_bad_values_and_picks_adamws_default_lr(mlp_digits):
    with pytest.raises(intedge.IntedgeError, match="unknown optimizer 'lion'"):
        intedge.Trainer(mlp_digits, optimizer="lion")
    with pytest.raises(intedge.IntedgeError, match="beta1\\^2 < beta2"):
        intedge.Trainer(mlp_digits, optimizer="adamw", betas=(0.9, 0.8))
    assert intedge.Trainer(mlp_digits, optimizer="adamw").config["lr"] == 1e-3
    assert intedge.Trainer(mlp_digits).config["lr"] == 0.1
