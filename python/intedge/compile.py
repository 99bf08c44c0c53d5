"""`intedge compile`: C sources that train a model on a microcontroller (or any C11 target).

The C comes from c_templates/*.in (string.Template: ${field}).

    DIR/intedge_model.h      sizes as #defines (model memory, arena), the config, the API below
    DIR/intedge_model.c      the .iem blob as a const array, the trainable flags, the input mapping
    DIR/intedge_ops.h        the ops the model uses: build the runtime with -DIE_OPS_SELECTED -I DIR
                             and it registers (and links) those alone
    DIR/train_example.c      the embedded training loop: load, create the session, step, digest
    DIR/intedge_data.c       with --data: samples and labels in flash, and intedge_next_batch()
    DIR/expected_output.txt  with --data: what train_example prints, from the same run on this host
    DIR/expected_state.ies   with --data: the training state that run ends with
    DIR/ckpt-00000000.iec    the untrained checkpoint: `intedge export DIR --state FILE` pairs it
                             with a state the device streamed out, and writes the trained ONNX

Memory sizes do not depend on the target's pointer width (the runtime's tables use fixed strides),
so the figures computed here are exact for a 32-bit microcontroller."""
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np

from .errors import IntedgeError

@dataclass(frozen=True)
class Target:
    cflags: str
    note: str
    compiler: str = ""  # the cross compiler --build runs ("" = no firmware build for it here)
    kernels: str = ""   # runtime/kernels/<dir> of its SIMD tier, and the flag that lists it
    kernel_flag: str = ""
    memory: str = ""    # the MPS2 board's memory map, for --build


ARM_EABI = "arm-none-eabi-gcc"
C_RUNTIME = Path(__file__).with_name("c_runtime")  # the runtime's C sources, installed with the package
DSP = dict(kernels="cortexm", kernel_flag="IE_HAVE_CORTEXM_KERNELS")
# the sizes do not depend on the target; the kernels and the build do
TARGETS = {
    "cortex-m0": Target("-mcpu=cortex-m0 -mthumb -mfloat-abi=soft", "ARMv6-M, no DSP, no FPU", ARM_EABI,
                        memory="memory-an385.ld"),
    "cortex-m3": Target("-mcpu=cortex-m3 -mthumb -mfloat-abi=soft", "ARMv7-M, no DSP, no FPU", ARM_EABI,
                        memory="memory-an385.ld"),
    "cortex-m4": Target("-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard",
                        "ARMv7E-M with DSP (smlad kernels)", ARM_EABI, memory="memory-an385.ld", **DSP),
    "cortex-m7": Target("-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard",
                        "ARMv7E-M with DSP (smlad kernels)", ARM_EABI, memory="memory-an385.ld", **DSP),
    "cortex-m33": Target("-mcpu=cortex-m33 -mthumb -mfloat-abi=soft", "ARMv8-M Mainline with DSP", ARM_EABI,
                         memory="memory-an505.ld", **DSP),
    "riscv32": Target("-march=rv32imac -mabi=ilp32", "RV32IMAC, no FPU"),
    "aarch64": Target("-march=armv8-a", "ARMv8-A Linux (NEON; dot product picked at run time)"),
    "host": Target("", "this machine's C compiler"),
}
LOSS_CODES = {"cross_entropy": "IE_LOSS_SOFTMAX_CE", "mse": "IE_LOSS_MSE", "bce": "IE_LOSS_BCE_LOGITS"}
MAX_DATA_BYTES = 1 << 20  # flash is small: refuse to embed more than 1 MB of samples


def _c_list(values, per_line=12, fmt="{}"):
    """Array initializer text: values formatted, per_line to a line."""
    items = [fmt.format(int(v)) for v in values]
    return ",\n    ".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def _dyadic(value):
    from .runtime import dyadic

    d = dyadic(value)
    return f"{{{d.m}, {d.e}}}"


def _optimizer_config(optimizer, betas, eps):
    """The lines of intedge_model_config that choose AdamW (none for SGD: the zeroed config)."""
    if optimizer == "sgd":
        return ""
    return ("    c->optimizer = IE_OPTIM_ADAMW;\n"
            f"    c->beta1 = (ie_dyadic){_dyadic(betas[0])};\n"
            f"    c->beta2 = (ie_dyadic){_dyadic(betas[1])};\n"
            f"    c->eps = (ie_dyadic){_dyadic(eps)};\n")


def _loss_text(loss_sum_q16, count):
    """The mean loss with four decimals, by the same integer arithmetic train_example.c uses."""
    milli = loss_sum_q16 * 10000 // (65536 * count)
    return f"{milli // 10000}.{milli % 10000:04d}"


def _render(template, out, **fields):
    """Writes c_templates/<template>.in with its ${fields} filled in as out."""
    text = (Path(__file__).with_name("c_templates") / f"{template}.in").read_text()
    out.write_text(Template(text).substitute(fields))


def write_ops_header(blob, path):
    """intedge_ops.h: IE_OP_USE_<OP> 1 for each op the model uses, 0 for the others (registry.c
    reads it under IE_OPS_SELECTED; every op must be listed, so a new op cannot be forgotten)."""
    from .iem import OP_NAMES, op_codes

    used = op_codes(blob)
    lines = [f"#define IE_OP_USE_{name} {int(code in used)}" for code, name in sorted(OP_NAMES.items())]
    path.write_text("/* Generated by `intedge compile`: the ops this model uses (runtime/src/ops/registry.c). */\n"
                    + "\n".join(lines) + "\n")


def runtime_files(target):
    """The runtime's C files a firmware for `target` compiles (testing.c serves only the Python
    tests; port_none.c: no heap)."""
    t = TARGETS[target]
    globs = ["src/*.c", "src/ops/*.c", "kernels/*.c", "kernels/scalar/*.c"]
    globs += [f"kernels/{t.kernels}/*.c"] if t.kernels else []
    files = [f for g in globs for f in sorted(C_RUNTIME.glob(g)) if f.name != "testing.c"]
    return files + [C_RUNTIME / "port" / "port_none.c"]


def _check_runtime_installed():
    if not (C_RUNTIME / "include" / "intedge.h").is_file():
        raise IntedgeError(f"this intedge install has no C sources in {C_RUNTIME}; reinstall it with pip install")


def copy_runtime(target, out):
    """out/runtime/: every file the target's firmware compiles, with the headers, so the folder
    builds on its own (add runtime/**/*.c and -I runtime/include to the firmware's build)."""
    _check_runtime_installed()
    headers = [f for f in C_RUNTIME.rglob("*.h") if "board" not in f.parts]
    for f in runtime_files(target) + headers:
        dest = out / "runtime" / f.relative_to(C_RUNTIME)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)


def build_firmware(target, out):
    """out/firmware.elf for qemu's MPS2 board of the target (the example streams its state to
    trained_state.ies); returns its `size` figures."""
    t = TARGETS[target]
    if not t.compiler:
        raise IntedgeError(f"--build makes firmware for the Cortex-M targets; for {target}, compile the sources "
                           "with the runtime (docs/mcu.md)")
    cc = shutil.which(t.compiler)
    size_tool = shutil.which(t.compiler[:-len("gcc")] + "size")
    if not cc or not size_tool:
        raise IntedgeError(f"--build needs {t.compiler} on PATH (Debian: apt install gcc-arm-none-eabi "
                           "libnewlib-arm-none-eabi)")
    _check_runtime_installed()
    board = C_RUNTIME / "board" / "mps2"
    elf = out / "firmware.elf"
    cmd = [cc, *t.cflags.split(), "-Os", "-std=c11", "-ffunction-sections", "-fdata-sections", "-DIE_OPS_SELECTED",
           f"-I{C_RUNTIME / 'include'}", f"-I{out}", '-DINTEDGE_STATE_FILE="trained_state.ies"',
           *([f"-D{t.kernel_flag}"] if t.kernel_flag else []),
           *map(str, sorted(out.glob("*.c"))), *map(str, runtime_files(target)), str(board / "startup.c"),
           "-nostartfiles", f"-T{board / t.memory}", f"-T{board / 'sections.ld'}", "--specs=nano.specs",
           "--specs=rdimon.specs", "-Wl,--gc-sections", "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise IntedgeError(f"building {elf} failed:\n{r.stderr.strip()[-2000:]}")
    text, data, bss = (int(v) for v in subprocess.run([size_tool, str(elf)], capture_output=True, text=True,
                                                       check=True).stdout.splitlines()[1].split()[:3])
    return {"elf": str(elf), "text": text, "data": data, "bss": bss}


def compile_model(model_path, out_dir, *, target="cortex-m4", batch_size=8, trainable=None, lr=0.05, momentum=0.0,
                  weight_decay=0.0, seed=0, loss="cross_entropy", data=None, steps=20, samples=None,
                  normalize=None, runtime=False, build=False, optimizer="sgd", betas=(0.9, 0.999), eps=1e-8):
    """Writes the sources (with runtime: the runtime's too; with build: a firmware ELF for qemu's
    MPS2 board); returns a dict of the figures it reports (bytes)."""
    from . import checkpoint as ckpt
    from .data import load_data, parse_normalize
    from .inspect_model import split_patterns, trainable_flags
    from .onnx_import import import_onnx
    from .runtime import Model
    from .trainer import Trainer

    if target not in TARGETS:
        raise IntedgeError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if data is not None and loss != "cross_entropy":
        raise IntedgeError("--data embeds labelled samples: it needs --loss cross_entropy")
    if build and data is None:
        raise IntedgeError("--build needs --data: the example firmware trains on samples in flash")
    model = import_onnx(model_path)
    flags = trainable_flags(model, split_patterns(trainable))
    runtime = Model(model.iem)
    if len(runtime.inputs) > 1:
        raise IntedgeError(f"{model_path} has {len(runtime.inputs)} inputs "
                           f"({', '.join(i.name for i in runtime.inputs)}); intedge compile writes firmware for "
                           "models with one input (use ie_session_step_inputs from C for the others)")
    ds = None
    if data is not None:
        ds = load_data(data, seed=seed, input_shape=model.input_shape, val_split=0.2)
    channels = model.input_shape[0] if len(model.input_shape) > 1 else 1
    u8 = ds is not None and ds.is_uint8
    mapping = parse_normalize(normalize, channels, ds.x_train if ds is not None else None)
    trainer = Trainer(model, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, seed=seed,
                      loss=loss, trainable=flags, input_format="u8" if u8 else "f32", input_mapping=mapping,
                      class_names=ds.class_names if ds is not None else None, optimizer=optimizer, betas=betas,
                      eps=eps)
    arena = runtime.arena_size(batch_size, trainable=flags, loss=loss, optimizer=optimizer, lean_scratch=True)
    figures = {"model_bytes": len(model.iem), "model_memory": runtime.memory_size(), "arena": arena,
               "data_bytes": 0}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainable_list = flags if flags is not None else [True] * len(model.param_names)
    mapping_arrays, mapping_config = "", ""
    if u8:
        offsets, scales, exponent = mapping.runtime_u8()
        mapping_arrays = (f"\nstatic const int32_t input_offset_q8[{channels}] = {{{_c_list(offsets)}}};\n"
                          f"static const int32_t input_scale_m[{channels}] = {{{_c_list(scales)}}};\n")
        mapping_config = ("    c->input_format = IE_INPUT_U8;\n"
                          f"    c->input_channels = {channels};\n"
                          "    c->input_offset_q8 = input_offset_q8;\n"
                          "    c->input_scale_m = input_scale_m;\n"
                          f"    c->input_scale_e = {exponent};\n")
    t = TARGETS[target]
    fields = dict(source=Path(model_path).name, target=target, target_note=t.note, cflags=t.cflags or "(none)",
                  model_bytes=len(model.iem), model_memory=figures["model_memory"], arena=arena, batch=batch_size,
                  input_size=model.input_size, output_size=model.output_size, params=len(model.param_names),
                  trainable_count=sum(map(bool, trainable_list)), input_u8=int(u8))
    _render("intedge_model.h", out / "intedge_model.h", **fields)
    write_ops_header(model.iem, out / "intedge_ops.h")
    _render("intedge_model.c", out / "intedge_model.c", source=fields["source"],
            blob=_c_list(model.iem, 16, "0x{:02x}"),
            trainable=", ".join("1" if t else "0" for t in trainable_list), mapping_arrays=mapping_arrays,
            mapping_config=mapping_config, loss=LOSS_CODES[loss], lr=_dyadic(lr), momentum=_dyadic(momentum),
            weight_decay=_dyadic(weight_decay), seed=seed & 0xFFFFFFFFFFFFFFFF,
            optimizer_config=_optimizer_config(optimizer, betas, eps))
    ckpt.save(out, trainer.checkpoint(), keep=1)
    x_type = "uint8_t" if u8 else "uint32_t"
    _render("train_example.c", out / "train_example.c", x_type=x_type)
    if ds is not None:
        n = min(samples or steps * batch_size, len(ds.x_train))
        x, y = trainer.prepare(ds.x_train[:n], ds.y_train[:n], "training")
        values = x if u8 else x.astype(np.float32).view(np.uint32)
        figures["data_bytes"] = int(values.nbytes + 4 * n)
        if figures["data_bytes"] > MAX_DATA_BYTES:
            raise IntedgeError(f"{n} samples take {figures['data_bytes']} bytes of flash; pass fewer --samples")
        _render("intedge_data.c", out / "intedge_data.c", data=data, samples=n, steps=steps, x_type=x_type,
                x_values=_c_list(values.reshape(-1), 16 if u8 else 6), y_values=_c_list(y))
        (out / "expected_output.txt").write_text(_host_run(trainer, x, y, steps, batch_size, figures))
        (out / "expected_state.ies").write_bytes(trainer.session.save_state())
    if runtime:
        copy_runtime(target, out)
    if build:
        figures["firmware"] = build_firmware(target, out)
    return figures


def _host_run(trainer, x, y, steps, batch_size, figures):
    """What train_example.c prints, from the same steps run here, less its `kernels` line (the one
    line that may differ between chips)."""
    s = trainer.session
    lines = [f"model memory {figures['model_memory']} B, arena {figures['arena']} B"]
    for step in range(steps):
        idx = (step * batch_size + np.arange(batch_size)) % len(x)
        loss, correct, count = s.step(x[idx], labels=y[idx])
        lines.append(f"step {step}: loss {_loss_text(round(loss * 65536), count)}, {correct}/{count} correct")
    lines.append(f"digest {s.digest():08x}")
    return "\n".join(lines) + "\n"


def format_figures(figures, target):
    ram = figures["model_memory"] + figures["arena"]
    flash = figures["model_bytes"] + figures["data_bytes"]
    lines = [f"target {target}: RAM {ram:,} B (model memory {figures['model_memory']:,} + arena "
             f"{figures['arena']:,}), flash {flash:,} B for the model ({figures['model_bytes']:,}) and data "
             f"({figures['data_bytes']:,}), plus the runtime code"]
    fw = figures.get("firmware")
    if fw:
        lines.append(f"firmware {fw['elf']}: flash {fw['text'] + fw['data']:,} B (text+rodata {fw['text']:,}, data "
                     f"{fw['data']:,}), RAM {fw['data'] + fw['bss']:,} B (data + bss, with the arena) plus the stack "
                     "it reports on exit under qemu")
    return "\n".join(lines)
