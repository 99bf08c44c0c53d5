"""Thin Python handles over the C runtime: Model (.iem bytes) and Session (training state).
Floats cross into C only as IEEE-754 bit patterns; the C side maps them with integer ops."""
from dataclasses import dataclass

import os

import numpy as np

from . import iem
from ._ffi import ffi, lib
from .errors import IntedgeError

LOSSES = {"cross_entropy": lib.IE_LOSS_SOFTMAX_CE, "mse": lib.IE_LOSS_MSE, "bce": lib.IE_LOSS_BCE_LOGITS,
          "pixel_cross_entropy": lib.IE_LOSS_SOFTMAX_CE_PIXELS, "centernet": lib.IE_LOSS_CENTERNET}
IGNORE_LABEL = lib.IE_IGNORE_LABEL  # a pixel label the per-pixel cross-entropy does not count
OPTIMIZERS = {"sgd": lib.IE_OPTIM_SGD, "adamw": lib.IE_OPTIM_ADAMW}
ADAMW_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8}  # PyTorch's
ROUNDINGS = {"stochastic": lib.IE_ROUND_STOCHASTIC, "nearest": lib.IE_ROUND_NEAREST}


@dataclass(frozen=True)
class NumberFormat:
    """The number format's ablation knobs (docs/fidelity.md); the defaults are the method's format.
    rounding: 'stochastic' or 'nearest' (training without SR); grad_bits: width of the activation
    gradients, 2..8; sgd_bits: width of the optimizer's integers (master weights, momentum), 16..32;
    bn_input_bits: width of a BatchNormalization's input fed by a Conv alone, 8 or 16."""
    rounding: str = "stochastic"
    grad_bits: int = 8
    sgd_bits: int = 32
    bn_input_bits: int = 8

    def __post_init__(self):
        if self.rounding not in ROUNDINGS:
            raise IntedgeError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {self.rounding!r}")
        if not 2 <= int(self.grad_bits) <= 8:
            raise IntedgeError(f"grad_bits must lie in 2..8 (int8 gradients are the widest), got {self.grad_bits}")
        if not 16 <= int(self.sgd_bits) <= 32:
            raise IntedgeError(f"sgd_bits must lie in 16..32, got {self.sgd_bits}")
        if self.bn_input_bits not in (8, 16):
            raise IntedgeError(f"bn_input_bits must be 8 or 16, got {self.bn_input_bits}")

    def apply(self, cfg):
        """Sets the config fields; the defaults leave them 0, the runtime's default format."""
        cfg.rounding = ROUNDINGS[self.rounding]
        cfg.grad_bits = 0 if self.grad_bits == 8 else int(self.grad_bits)
        cfg.sgd_bits = 0 if self.sgd_bits == 32 else int(self.sgd_bits)
        cfg.bn_input_bits = 0 if self.bn_input_bits == 8 else int(self.bn_input_bits)


def _f32_bits(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)


def input_rows(info, x, u8=False):
    """Samples of graph input `info` as the runtime reads them, one row each: int32 integers for an
    integer input (values int32 cannot hold are refused, not wrapped), uint8 pixels for a u8
    first input, else float32 bits. Each row must hold the input's size."""
    name = f" '{info.name}'"
    if info.ids:
        a = np.asarray(x)
        if a.dtype.kind not in "iub":
            raise IntedgeError(f"input{name} takes integers (token ids or a mask), not {a.dtype}")
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            raise IntedgeError(f"input{name} holds {a.max() if a.max() >= 2**31 else a.min()}, beyond int32")
        a = np.ascontiguousarray(a, dtype=np.int32).reshape(len(a), -1)
    elif u8:
        a = np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), -1)
    else:
        a = _f32_bits(x).reshape(len(x), -1)
    if a.shape[1] != info.numel:
        raise IntedgeError(f"each sample has {a.shape[1]} values; the model input{name} takes {list(info.shape)} "
                           f"= {info.numel}")
    return a


def _text(chars):
    """A C string from the runtime. Messages may quote names from a damaged file, so bytes that
    are not UTF-8 are replaced rather than raised on."""
    return ffi.string(chars).decode(errors="replace")


def _name(chars, what):
    """A name from a model's string table: it must be UTF-8, as the importer wrote it."""
    try:
        return ffi.string(chars).decode()
    except UnicodeDecodeError:
        raise IntedgeError(f"the model's {what} name {ffi.string(chars)!r} is not valid UTF-8; the file is damaged") \
            from None


def kernel_tiers():
    """Kernel tiers this CPU runs, best last (all give identical bytes)."""
    tiers, i = [], 0
    while (name := lib.ie_kernel_tier(i)) != ffi.NULL:
        tiers.append(ffi.string(name).decode())
        i += 1
    return tiers


def dyadic(value):
    """A float hyper-parameter as the runtime's dyadic constant (mantissa, exponent)."""
    out = ffi.new("ie_dyadic *")
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused below
        bits = int(np.float32(value).view(np.uint32))
    if lib.ie_dyadic_from_f32_bits(bits, out) != lib.IE_OK:
        raise IntedgeError(f"hyper-parameter {value!r} is not a finite number")
    return out[0]


def check_adamw(betas, eps, momentum=0.0):
    """AdamW's hyper-parameters as the runtime takes them, or an IntedgeError naming the fix."""
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise IntedgeError(f"betas must be two numbers (beta1, beta2), not {betas!r}") from None
    if not (0 <= b1 < 1 and 0 < b2 < 1):
        raise IntedgeError(f"AdamW needs 0 <= beta1 < 1 and 0 < beta2 < 1; got betas {b1}, {b2}")
    if not b1 * b1 < b2:
        raise IntedgeError(f"AdamW needs beta1^2 < beta2 (the integer step bounds |m|/sqrt(v) with it); got betas "
                           f"{b1}, {b2}: lower beta1 or raise beta2")
    if not (float(eps) >= 0 and np.isfinite(eps)):
        raise IntedgeError(f"eps must be a finite number >= 0, not {eps!r}")
    if momentum:
        raise IntedgeError("AdamW takes betas, not momentum: drop the momentum (or use optimizer 'sgd')")


@dataclass(frozen=True)
class InputInfo:
    index: int
    name: str
    shape: tuple  # per sample
    numel: int
    ids: bool  # int32 integers (token ids, masks) rather than float data


@dataclass(frozen=True)
class ParamInfo:
    index: int
    name: str
    shape: tuple
    numel: int


class Model:
    """A validated .iem model. Keeps the bytes alive for as long as the handle lives (read-only
    bytes as they are, anything else copied)."""

    def __init__(self, iem_bytes):
        readonly = isinstance(iem_bytes, bytes) or (isinstance(iem_bytes, memoryview) and iem_bytes.readonly)
        owner = iem.backing_map(iem_bytes)
        self._bytes = owner if owner is not None else iem_bytes if readonly else bytes(iem_bytes)
        self._buf = ffi.from_buffer(self._bytes)
        handle = ffi.new("ie_model **")
        status = lib.ie_model_load(self._buf, len(self._bytes), handle)
        self._h = handle[0]
        if status != lib.IE_OK:
            msg = _text(lib.ie_model_errmsg(self._h)) if self._h != ffi.NULL else "out of memory"
            lib.ie_model_free(self._h)
            self._h = ffi.NULL
            raise IntedgeError(f"the runtime rejected the model: {msg}")
        size = ffi.new("size_t *")  # read now: once the weights are released the buffer's CRC fails
        lib.ie_model_memory_size(self._buf, len(self._bytes), size)
        self._memory_size = size[0]
        self.params = []
        info = ffi.new("ie_param_info *")
        for i in range(lib.ie_model_param_count(self._h)):
            lib.ie_model_param_info(self._h, i, info)
            shape = tuple(info.dims[d] for d in range(info.rank))
            self.params.append(ParamInfo(i, _name(info.name, "parameter"), shape, info.numel))
        self.inputs = []
        inp = ffi.new("ie_input_info *")
        for i in range(lib.ie_model_input_count(self._h)):
            lib.ie_model_input_info(self._h, i, inp)
            self.inputs.append(InputInfo(i, _name(inp.name, "input"), tuple(inp.dims[d] for d in range(inp.rank)),
                                         inp.numel, bool(inp.ids)))
        self.input_size = lib.ie_model_input_size(self._h)
        self.output_size = lib.ie_model_output_size(self._h)
        lib.ie_model_output_info(self._h, inp)
        self.output_shape = tuple(inp.dims[d] for d in range(inp.rank))  # per sample
        if owner is not None:
            owner.borrowers.add(self)

    def errmsg(self):
        return _text(lib.ie_model_errmsg(self._h))

    def _config(self, batch_size, lr, momentum, weight_decay, seed, loss, trainable, input_u8=None, kernels=None,
                threads=1, keep_tensors=False, optimizer="sgd", betas=ADAMW_DEFAULTS["betas"],
                eps=ADAMW_DEFAULTS["eps"], lean_scratch=False, number_format=None):
        """input_u8: None for float32 input, or (channels, offsets_q8, scale mantissas, exponent).
        kernels: a tier name; default INTEDGE_KERNELS from the environment, else the best.
        keep_tensors: every activation and gradient stays readable after a step (tests).
        lean_scratch: plan the least scratch (convolutions one sample per GEMM), as firmware does.
        optimizer: 'sgd' (lr, momentum, weight_decay) or 'adamw' (lr, betas, eps, weight_decay).
        number_format: a NumberFormat (None: the default format)."""
        if loss not in LOSSES:
            raise IntedgeError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if optimizer not in OPTIMIZERS:
            raise IntedgeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        cfg = ffi.new("ie_session_config *")
        cfg.batch_size = batch_size
        cfg.loss = LOSSES[loss]
        cfg.lr = dyadic(lr)
        cfg.momentum = dyadic(momentum)
        cfg.weight_decay = dyadic(weight_decay)
        cfg.optimizer = OPTIMIZERS[optimizer]
        if optimizer == "adamw":
            check_adamw(betas, eps, momentum)
            cfg.beta1, cfg.beta2 = dyadic(betas[0]), dyadic(betas[1])
            cfg.eps = dyadic(eps)
        cfg.seed = seed & 0xFFFFFFFFFFFFFFFF
        keep = []
        if trainable is not None:
            if len(trainable) != len(self.params):
                raise IntedgeError(f"trainable has {len(trainable)} flags; the model has {len(self.params)} parameters")
            keep.append(ffi.new("uint8_t[]", [1 if t else 0 for t in trainable] or [0]))
            cfg.trainable = keep[-1]
        if input_u8 is not None:
            channels, offsets, scales, exponent = input_u8
            cfg.input_format = lib.IE_INPUT_U8
            cfg.input_channels = channels
            keep += [ffi.new("int32_t[]", list(offsets)), ffi.new("int32_t[]", list(scales))]
            cfg.input_offset_q8, cfg.input_scale_m = keep[-2], keep[-1]
            cfg.input_scale_e = exponent
        cfg.threads = max(int(threads or 1), 1)
        cfg.keep_tensors = 1 if keep_tensors else 0
        cfg.lean_scratch = 1 if lean_scratch else 0
        (number_format or NumberFormat()).apply(cfg)
        kernels = kernels or os.environ.get("INTEDGE_KERNELS") or None
        if kernels:
            if kernels not in kernel_tiers():
                raise IntedgeError(f"kernel tier {kernels!r} does not run here; available: {', '.join(kernel_tiers())}")
            keep.append(ffi.new("char[]", kernels.encode()))
            cfg.kernels = keep[-1]
        return cfg, keep

    def memory_size(self):
        """Bytes ie_model_load_into needs for this model (the same on every target)."""
        return self._memory_size

    def arena_size(self, batch_size, trainable=None, loss="cross_entropy", optimizer="sgd", lean_scratch=False,
                   momentum=0.0, number_format=None):
        """Bytes one training session needs at this batch size, computed by the C planner
        (lean_scratch: as a firmware plans it, convolutions one sample per GEMM; SGD's momentum
        adds an int32 buffer per trained parameter; number_format: a NumberFormat, None the default)."""
        cfg, _keep = self._config(batch_size, 0.0, momentum, 0.0, 0, loss, trainable, optimizer=optimizer,
                                  lean_scratch=lean_scratch, number_format=number_format)
        out = ffi.new("size_t *")
        if lib.ie_session_arena_size(self._h, cfg, out) != lib.IE_OK:
            raise IntedgeError(self.errmsg())
        return out[0]

    def release_weights(self):
        """The float weights are in the sessions' masters; the bytes may go (ie_model_release_weights):
        sessions created afterwards are refused."""
        if lib.ie_model_release_weights(self._h) != lib.IE_OK:
            raise IntedgeError(self.errmsg())

    def __del__(self):
        if getattr(self, "_h", ffi.NULL) != ffi.NULL:
            lib.ie_model_free(self._h)
            self._h = ffi.NULL


class Session:
    """One training session: master weights, optimizer state and the planned arena."""

    def __init__(self, model, *, batch_size, lr, momentum=0.0, weight_decay=0.0, seed=0,
                 loss="cross_entropy", trainable=None, input_u8=None, kernels=None, threads=1, keep_tensors=False,
                 optimizer="sgd", betas=ADAMW_DEFAULTS["betas"], eps=ADAMW_DEFAULTS["eps"], lean_scratch=False,
                 number_format=None):
        self.model = model
        self.batch_size = batch_size
        self.loss = loss
        self.optimizer = optimizer
        self.input_u8 = input_u8 is not None
        cfg, self._keep = model._config(batch_size, lr, momentum, weight_decay, seed, loss, trainable, input_u8,
                                        kernels, threads, keep_tensors, optimizer, betas, eps, lean_scratch,
                                        number_format)
        handle = ffi.new("ie_session **")
        if lib.ie_session_create(model._h, cfg, ffi.NULL, 0, handle) != lib.IE_OK:
            raise IntedgeError(f"cannot create a training session: {model.errmsg()}")
        self._h = handle[0]

    def close(self):
        """Frees the arena now (calls afterwards fail with "session handle is NULL")."""
        if getattr(self, "_h", ffi.NULL) != ffi.NULL:
            lib.ie_session_free(self._h)
            self._h = ffi.NULL

    __del__ = close

    def _check(self, status):
        if status != lib.IE_OK:
            raise IntedgeError(_text(lib.ie_session_errmsg(self._h)))

    def _one_input(self, info, x, n):
        """One input's batch as the runtime reads it: uint8 pixels (the first input of a u8
        session), int32 integers, or float32 bits."""
        a = input_rows(info, x, info.index == 0 and self.input_u8)
        name = f" '{info.name}'"
        if len(a) != n:
            raise IntedgeError(f"the model input{name} has {len(a)} samples; the first input has {n}")
        return a

    def _inputs(self, x, labels, targets):
        """x: an array for a one-input model; a sequence (input order) or a dict (by name) of
        arrays for a model with several inputs."""
        infos = self.model.inputs
        if isinstance(x, dict):
            missing = [i.name for i in infos if i.name not in x]
            if missing:
                raise IntedgeError(f"the model's input(s) {', '.join(missing)} are missing from the batch")
            xs = [x[i.name] for i in infos]
        elif isinstance(x, (list, tuple)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(infos):
            raise IntedgeError(f"the model takes {len(infos)} inputs ({', '.join(i.name for i in infos)}); "
                               f"the batch gives {len(xs)}")
        n = len(xs[0])
        arrays = [self._one_input(info, a, n) for info, a in zip(infos, xs)]
        ptrs = ffi.new("void *[]", [ffi.from_buffer(a) for a in arrays])
        lab = ffi.NULL
        tgt = ffi.NULL
        keep = arrays + [ptrs]
        if labels is not None:
            labels = np.ascontiguousarray(labels, dtype=np.int32)
            per_sample = {"pixel_cross_entropy": self.model.output_size // self.model.output_shape[0],
                          "centernet": self.model.output_size}.get(self.loss, 1)
            if labels.size != n * per_sample:
                raise IntedgeError(f"the batch has {labels.size} labels; {n} samples take {n * per_sample} "
                                   f"({per_sample} a sample)")
            keep.append(labels)
            lab = ffi.from_buffer("int32_t[]", labels)
        if targets is not None:
            targets = _f32_bits(targets).reshape(n, -1)
            keep.append(targets)
            tgt = ffi.from_buffer("uint32_t[]", targets)
        return n, ptrs, lab, tgt, keep

    PROFILE_PHASES = ("forward", "dX", "dW", "optimizer")
    PROFILE_KINDS = ("total", "gemm", "pack", "im2col", "rounding")

    def nodes(self):
        """[(name, op type)] of the runtime's nodes, in execution order."""
        out, name, op = [], ffi.new("const char **"), ffi.new("const char **")
        while lib.ie_test_node(self._h, len(out), name, op) == lib.IE_OK:
            out.append((_text(name[0]), _text(op[0])))
        return out

    def profile_start(self):
        """Times every following step (ie_test_profile in intedge_testing.h); profile() reads the sums."""
        self._prof = np.zeros((len(self.nodes()) + 1, len(self.PROFILE_PHASES), len(self.PROFILE_KINDS)), np.uint64)
        self._check(lib.ie_test_profile(self._h, ffi.from_buffer("uint64_t[]", self._prof)))

    def profile(self):
        """Nanoseconds since profile_start: [node (the last row: input and loss), phase, kind]."""
        return self._prof.copy()

    def digest(self):
        """CRC-32 of the training state (weights, optimizer state, step): equal on every machine
        that ran the same steps."""
        out = ffi.new("uint32_t *")
        self._check(lib.ie_session_digest(self._h, out))
        return int(out[0])

    def step(self, x, labels=None, targets=None):
        """One training step. Returns (summed loss in nats, correct predictions, count)."""
        n, xp, lab, tgt, _keep = self._inputs(x, labels, targets)
        stats = ffi.new("ie_step_stats *")
        self._check(lib.ie_session_step_inputs(self._h, n, xp, lab, tgt, stats))
        return stats.loss_sum_q16 / 65536.0, stats.n_correct, stats.count

    def evaluate(self, x, labels=None, targets=None):
        n, xp, lab, tgt, _keep = self._inputs(x, labels, targets)
        stats = ffi.new("ie_step_stats *")
        self._check(lib.ie_session_evaluate_inputs(self._h, n, xp, lab, tgt, stats))
        return stats.loss_sum_q16 / 65536.0, stats.n_correct, stats.count

    def forward(self, x):
        """Evaluation-mode outputs as float32, [n, output size]."""
        n, xp, _lab, _tgt, _keep = self._inputs(x, None, None)
        out = np.empty((n, self.model.output_size), dtype=np.uint32)
        self._check(lib.ie_session_forward_inputs(self._h, n, xp, ffi.from_buffer("uint32_t[]", out)))
        return out.view(np.float32)

    def forward_fixed(self, x):
        """Evaluation-mode outputs as int8 mantissas and one exponent."""
        n, xp, _lab, _tgt, _keep = self._inputs(x, None, None)
        q = np.empty((n, self.model.output_size), dtype=np.int8)
        e = ffi.new("int16_t *")
        self._check(lib.ie_session_forward(self._h, n, xp[0], ffi.from_buffer("int8_t[]", q), e))
        return q, int(e[0])

    def param(self, index):
        """Parameter `index` as float32 in its ONNX shape."""
        info = self.model.params[index]
        out = np.empty(info.numel, dtype=np.uint32)
        self._check(lib.ie_session_get_param_f32_bits(self._h, index, ffi.from_buffer("uint32_t[]", out)))
        return out.view(np.float32).reshape(info.shape)

    def param_fixed(self, index):
        """Master weights exactly: (int32 mantissas, exponent)."""
        info = self.model.params[index]
        out = np.empty(info.numel, dtype=np.int32)
        e = ffi.new("int16_t *")
        self._check(lib.ie_session_get_param(self._h, index, ffi.from_buffer("int32_t[]", out), e))
        return out.reshape(info.shape), int(e[0])

    def set_param_fixed(self, index, mantissas, exponent):
        """Master weights exactly, as param_fixed returns them."""
        q = np.ascontiguousarray(mantissas, dtype=np.int32).reshape(-1)
        if q.size != self.model.params[index].numel:
            raise IntedgeError(f"parameter '{self.model.params[index].name}' takes {self.model.params[index].numel} values")
        self._check(lib.ie_session_set_param(self._h, index, ffi.from_buffer("int32_t[]", q), exponent))

    def set_param(self, index, values):
        info = self.model.params[index]
        bits = _f32_bits(values).reshape(-1)
        if bits.size != info.numel:
            raise IntedgeError(f"parameter '{info.name}' takes {info.numel} values, got {bits.size}")
        self._check(lib.ie_session_set_param_f32_bits(self._h, index, ffi.from_buffer("uint32_t[]", bits)))

    def state_dict(self):
        """{initializer name: float32 array}, like torch.nn.Module.state_dict."""
        return {p.name: self.param(p.index) for p in self.model.params}

    def set_lr(self, lr):
        self._check(lib.ie_session_set_lr(self._h, dyadic(lr)))

    @property
    def threads(self):
        return lib.ie_session_threads(self._h)

    @property
    def kernels(self):
        return ffi.string(lib.ie_session_kernels(self._h)).decode()

    @property
    def step_count(self):
        return lib.ie_session_step_count(self._h)

    def save_state(self):
        """The exact training state (weights, optimizer state, step) as bytes."""
        size = ffi.new("size_t *")
        self._check(lib.ie_session_state_size(self._h, size))
        buf = bytearray(size[0])
        self._check(lib.ie_session_save_state(self._h, ffi.from_buffer(buf), len(buf)))
        return bytes(buf)

    def load_state(self, blob):
        self._check(lib.ie_session_load_state(self._h, ffi.from_buffer(blob), len(blob)))
