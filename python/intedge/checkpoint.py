"""Checkpoint files (.iec): one versioned, CRC-protected file that is enough to resume or export.

Layout (little-endian; docs/format.md): a 24-byte header ("IEC1", u16 version, u16 section count,
u64 file size, u32 CRC-32 of every byte after the header, u32 0), then sections, each a 4-byte
tag, a u64 length and the bytes:
  META  JSON: position (epoch, batch, step), partial-epoch sums, metrics history, config,
        input mapping, class names
  ONNX  the original model, so a checkpoint is self-contained
  IEMH  the SHA-256 of the runtime model (.iem) the state belongs to; version 1 held the .iem
        itself (read still: its digest is taken), 43 MB of float weights for ResNet-18 that a
        trainer no longer holds once its session has them
  STAT  the C runtime's training state (master weights, momentum, step), exact

Writes are atomic: a temp file in the same folder, fsync, rename, fsync of the folder. A reader
never sees a half-written checkpoint; a crash leaves at most a stray temp file, which is ignored.
"""
import errno
import hashlib
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import faults
from .errors import IntedgeError

MAGIC = b"IEC1"
VERSION = 2
HEADER = struct.Struct("<4sHHQII")
SECTION = struct.Struct("<4sQ")
TAGS = (b"META", b"ONNX", b"IEMH", b"STAT")
TAGS_V1 = (b"META", b"ONNX", b"IEM ", b"STAT")
NAME = re.compile(r"^ckpt-(\d{8})\.iec$")
# what every reader of META takes for granted (Trainer.checkpoint writes it)
META_TYPES = {"epoch": int, "batch": int, "step": int, "partial": dict, "history": list, "config": dict,
              "input_mapping": dict}

_writes = 0  # checkpoints this process has written, for fault injection


class CheckpointError(IntedgeError):
    pass


@dataclass
class Checkpoint:
    meta: dict
    onnx: bytes
    iem_sha256: str  # hex
    state: bytes
    path: Path = None


def encode(ck):
    body = b"".join(SECTION.pack(tag, len(data)) + data for tag, data in
                    zip(TAGS, (json.dumps(ck.meta, sort_keys=True).encode(), ck.onnx, bytes.fromhex(ck.iem_sha256),
                               ck.state)))
    return HEADER.pack(MAGIC, VERSION, len(TAGS), HEADER.size + len(body), zlib.crc32(body), 0) + body


def decode(blob, path="checkpoint"):
    if len(blob) < HEADER.size:
        raise CheckpointError(f"{path} is truncated ({len(blob)} bytes)")
    magic, version, count, size, crc, _ = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not an intedge checkpoint")
    if version not in (1, VERSION):
        raise CheckpointError(f"{path} has checkpoint version {version}; this intedge reads versions 1 to {VERSION}")
    if size != len(blob):
        raise CheckpointError(f"{path} is truncated or damaged: {len(blob)} bytes, header says {size}")
    if zlib.crc32(blob[HEADER.size:]) != crc:
        raise CheckpointError(f"{path} is corrupt (CRC mismatch)")
    sections, off = {}, HEADER.size
    for _ in range(count):
        if off + SECTION.size > size:
            raise CheckpointError(f"{path}: section table runs past the end")
        tag, length = SECTION.unpack_from(blob, off)
        off += SECTION.size
        if off + length > size:
            raise CheckpointError(f"{path}: section {tag!r} runs past the end")
        sections[tag] = blob[off:off + length]
        off += length
    tags = TAGS if version == VERSION else TAGS_V1
    missing = [t.decode().strip() for t in tags if t not in sections]
    if version == VERSION and b"IEMH" in sections and len(sections[b"IEMH"]) != 32:
        missing.append("a 32-byte IEMH")
    if missing or off != size:
        raise CheckpointError(f"{path}: malformed (missing {', '.join(missing) or 'nothing'}; "
                              f"{size - off} trailing bytes)")
    try:
        meta = json.loads(sections[b"META"])
    except ValueError:
        raise CheckpointError(f"{path}: its metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != "intedge-checkpoint" or \
            not all(isinstance(meta.get(k), t) for k, t in META_TYPES.items()):
        raise CheckpointError(f"{path}: its metadata lacks the position, history or configuration of the run")
    iem_sha256 = sections[b"IEMH"].hex() if version == VERSION else hashlib.sha256(sections[b"IEM "]).hexdigest()
    return Checkpoint(meta, sections[b"ONNX"], iem_sha256, sections[b"STAT"], Path(path))


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens folders
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(f, data):
    global _writes
    _writes += 1
    if os.environ.get(faults.KILL_IN_CHECKPOINT) == str(_writes):
        f.write(data[:len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        faults.kill_if(faults.KILL_IN_CHECKPOINT, _writes)
    f.write(data)


def write_atomic(path, data, advice="free space or write it elsewhere"):
    """Writes bytes to path atomically. Errors (a full disk, a read-only folder) leave the old
    file, if any, untouched and raise IntedgeError naming the cause, then `advice`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise IntedgeError(f"cannot write {path}: {why_not_written(exc)}; {advice}") from None
    return path


def why_not_written(exc):
    """An OSError from a write, in words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return exc.strerror or str(exc)


def save(folder, ck, keep=3):
    """Writes ckpt-<step>.iec into folder and keeps the newest `keep`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_atomic(folder / f"ckpt-{ck.meta['step']:08d}.iec", encode(ck),
                        "free space or pass --output-dir elsewhere (earlier checkpoints are intact)")
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder):
    """Checkpoint files in a folder, oldest first (temp files are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if NAME.match(p.name)), key=lambda p: int(NAME.match(p.name)[1]))


def load(path):
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    return decode(blob, path)


def load_latest(target, warn=None):
    """A checkpoint file, or the newest good one in a run folder (or its checkpoints/), falling
    back past corrupt ones with a warning."""
    target = Path(target)
    if target.is_file():
        return load(target)
    folder = target / "checkpoints" if (target / "checkpoints").is_dir() else target
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"{target}: no checkpoints found (expected {folder}/ckpt-*.iec)")
    errors = []
    for p in reversed(candidates):
        try:
            ck = load(p)
        except CheckpointError as exc:
            errors.append(str(exc))
            if warn:
                warn(f"{exc}; falling back to the previous checkpoint")
            continue
        return ck
    raise CheckpointError(f"{target}: every checkpoint is damaged: " + "; ".join(errors))
