"""atheris harness of the checkpoint container (.iec): the input, its size field and CRC fixed up
so that mutations reach the parsers, through intedge.checkpoint.decode and Trainer.from_checkpoint
(the section table, the JSON metadata and the configuration it records, the ONNX section
re-imported and compared with the IEM section, then the training state). Anything but an
IntedgeError escapes and fails the run (atheris keeps the input as crash-*).

Byte mutations of JSON mostly break its syntax, so half of the mutations are structural
(mutate_meta): the metadata is parsed, one entry (at the top or in the recorded configuration) is
dropped or given a value of another type, and the checkpoint is encoded again.
tools/fuzz/run.sh runs it with the other harnesses: python tools/fuzz/fuzz_checkpoint.py
[libFuzzer options] CORPUS_DIR SEED_DIR (the seeds are checkpoints of a small MLP's trainers,
tools/fuzz/make_seeds.py)."""
import json
import random
import sys
import zlib

import atheris

with atheris.instrument_imports(include=["intedge"]):
    from intedge import IntedgeError, Trainer
    from intedge import checkpoint as ckpt

VALUES = [None, True, -1, 0, 1, 2**31, 2**63, -(2**63), 1e300, float("nan"), "", "x", "sgd", [], [1], {}, {"a": 1}]


def with_crc(data):
    """data with the header's size and CRC rewritten, as a writer would have written them."""
    if len(data) < ckpt.HEADER.size:
        return data
    magic, version, count, _, _, pad = ckpt.HEADER.unpack_from(data)
    body = data[ckpt.HEADER.size:]
    return ckpt.HEADER.pack(magic, version, count, len(data), zlib.crc32(body), pad) + body


def mutate_meta(ck, rng):
    """One metadata entry, at the top or in the configuration, dropped or replaced."""
    meta = json.loads(json.dumps(ck.meta))
    targets = [meta] + [v for v in meta.values() if isinstance(v, dict) and v]
    target = rng.choice(targets)
    key = rng.choice(sorted(target))
    if rng.random() < 0.3:
        del target[key]
    elif isinstance(target[key], (int, float)) and not isinstance(target[key], bool) and rng.random() < 0.5:
        target[key] = target[key] + rng.choice([-1, 1]) * rng.choice([1, 2, 1000, 2**31])
    else:
        target[key] = rng.choice(VALUES)
    ck.meta = meta


def custom_mutator(data, max_size, seed):
    rng = random.Random(seed)
    if rng.random() < 0.5:
        try:
            ck = ckpt.decode(with_crc(data))
            mutate_meta(ck, rng)
            out = ckpt.encode(ck)
            return out if len(out) <= max_size else atheris.Mutate(data, max_size)
        except (IntedgeError, ValueError, TypeError):  # not a checkpoint this far, or a value JSON refuses
            pass
    return atheris.Mutate(data, max_size)


def test_one_input(data):
    try:
        Trainer.from_checkpoint(ckpt.decode(with_crc(data), "fuzzed.iec"))
    except IntedgeError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
