#!/usr/bin/env python3
"""Writes the seed/regression corpus in fuzz/corpus (committed; rerun only to change it).

Files named ok-* must parse; bad-* must be rejected with quantlens::Error naming the
file. The corpus replay test (tests/formats/test_fuzz_corpus.cpp) checks both, and the
libFuzzer targets start from these seeds."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, version=3, align=32, raw_tensor_infos=None):
    """kvs: list of (key, type, payload bytes); tensors: list of (name, ne, type, data)."""
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    for k, t, payload in kvs:
        out += gstr(k) + struct.pack("<I", t) + payload
    offset = 0
    infos = b""
    for name, ne, ty, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", d) for d in ne)
        infos += struct.pack("<IQ", ty, offset)
        offset += (len(data) + align - 1) // align * align
    out += raw_tensor_infos if raw_tensor_infos is not None else infos
    out += b"\0" * (-len(out) % align)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % align)
    return out


def write(sub, name, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def gguf_corpus():
    f32 = struct.pack("<32f", *range(32))
    arch = ("general.architecture", 8, gstr("llama"))
    arr = ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + gstr("a") + gstr("b") + gstr("c"))
    nested = ("x.nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 5, 2) + struct.pack("<ii", 1, -1))
    ok = gguf([arch, arr, nested], [("t", [32], 0, f32), ("u", [16, 2], 0, f32)])
    write("gguf", "ok-small.gguf", ok)
    write("gguf", "ok-no-tensors.gguf", gguf([arch], []))
    write("gguf", "ok-align64.gguf",
          gguf([("general.alignment", 4, struct.pack("<I", 64))], [("t", [32], 0, f32), ("u", [8], 0, f32[:32])], align=64))
    # llama-like metadata so config_from_gguf runs too
    meta = [arch] + [(f"llama.{k}", 4, struct.pack("<I", v)) for k, v in
                     [("block_count", 1), ("embedding_length", 32), ("feed_forward_length", 64),
                      ("attention.head_count", 2), ("attention.head_count_kv", 1), ("vocab_size", 8)]]
    write("gguf", "ok-llama-meta.gguf", gguf(meta, [("token_embd.weight", [32, 8], 1, bytes(512))]))

    write("gguf", "bad-empty.gguf", b"")
    write("gguf", "bad-magic.gguf", b"GGUX" + ok[4:])
    write("gguf", "bad-version.gguf", ok[:4] + struct.pack("<I", 7) + ok[8:])
    for n in (3, 10, 23, 40, 70, len(ok) - 1):
        write("gguf", f"bad-truncated-{n}.gguf", ok[:n])
    write("gguf", "bad-huge-tensor-count.gguf", ok[:8] + struct.pack("<Q", 2**63) + ok[16:])
    write("gguf", "bad-huge-kv-count.gguf", ok[:16] + struct.pack("<Q", 2**40) + ok[24:])
    write("gguf", "bad-huge-string.gguf", ok[:24] + struct.pack("<Q", 2**62) + ok[32:])
    write("gguf", "bad-value-type.gguf", gguf([("k", 13, b"\0" * 8)], []))
    write("gguf", "bad-bool.gguf", gguf([("k", 7, b"\x05")], []))
    write("gguf", "bad-array-type.gguf", gguf([("k", 9, struct.pack("<IQ", 99, 1))], []))
    write("gguf", "bad-huge-array.gguf", gguf([("k", 9, struct.pack("<IQ", 4, 2**61))], []))
    deep = struct.pack("<IQ", 9, 1) * 20 + struct.pack("<IQ", 4, 0)
    write("gguf", "bad-deep-array.gguf", gguf([("k", 9, deep)], []))
    write("gguf", "bad-duplicate-key.gguf", gguf([arch, arch], []))
    write("gguf", "bad-duplicate-tensor.gguf", gguf([], [("t", [32], 0, f32), ("t", [32], 0, f32)]))
    write("gguf", "bad-unknown-type.gguf", gguf([], [("t", [32], 77, f32)]))
    write("gguf", "bad-negative-dim.gguf", gguf([], [("t", [-32], 0, f32)]))
    write("gguf", "bad-five-dims.gguf", gguf([], [("t", [1, 1, 1, 1, 32], 0, f32)]))
    write("gguf", "bad-zero-dims.gguf", gguf([], [("t", [], 0, f32)]))
    write("gguf", "bad-overflow.gguf", gguf([], [("t", [2**40, 2**40], 0, f32)]))
    write("gguf", "bad-block-size.gguf", gguf([], [("t", [100], 12, f32)]))
    write("gguf", "bad-alignment.gguf", gguf([("general.alignment", 4, struct.pack("<I", 48))], []))
    write("gguf", "bad-alignment-type.gguf", gguf([("general.alignment", 5, struct.pack("<i", 32))], []))
    infos = gstr("t") + struct.pack("<IqIQ", 1, 32, 0, 4096)
    write("gguf", "bad-offset-out-of-range.gguf", gguf([], [("t", [32], 0, f32)], raw_tensor_infos=infos))
    infos = gstr("t") + struct.pack("<IqIQ", 1, 32, 0, 8)
    write("gguf", "bad-offset-unaligned.gguf", gguf([], [("t", [32], 0, f32)], raw_tensor_infos=infos))
    infos = gstr("t") + struct.pack("<IqIQ", 1, 32, 0, 2**64 - 32)
    write("gguf", "bad-offset-wraps.gguf", gguf([], [("t", [32], 0, f32)], raw_tensor_infos=infos))


def st(header, data=b"", length=None):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def safetensors_corpus():
    good = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
            "c": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]},
            "__metadata__": {"format": "pt"}}
    data = struct.pack("<4f", 1, 2, 3, 4) + b"\x80\x3f" * 4 + b"\x00\x3c" * 2
    ok = st(good, data)
    write("safetensors", "ok-small.safetensors", ok)
    write("safetensors", "ok-empty.safetensors", st({}))
    write("safetensors", "ok-zero-size.safetensors", st({"z": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}))
    write("safetensors", "bad-empty.safetensors", b"")
    for n in (4, 8, 30, len(ok) - 1):
        write("safetensors", f"bad-truncated-{n}.safetensors", ok[:n])
    write("safetensors", "bad-header-past-end.safetensors", st(good, data, length=10**6))
    write("safetensors", "bad-header-negative.safetensors", st(good, data, length=2**64 - 1))
    write("safetensors", "bad-json.safetensors", st(b'{"a": {"dtype": "F32",'))
    write("safetensors", "bad-not-object.safetensors", st(b"[1, 2, 3]"))
    def one(entry, d=b"\0" * 16):
        return st({"a": entry}, d)
    write("safetensors", "bad-dtype.safetensors", one({"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}))
    write("safetensors", "bad-negative-shape.safetensors", one({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}))
    write("safetensors", "bad-huge-shape.safetensors", one({"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}))
    write("safetensors", "bad-offsets-range.safetensors", one({"dtype": "F32", "shape": [4], "data_offsets": [0, 1600]}))
    write("safetensors", "bad-offsets-reversed.safetensors", one({"dtype": "F32", "shape": [0], "data_offsets": [16, 8]}))
    write("safetensors", "bad-offsets-negative.safetensors", one({"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}))
    write("safetensors", "bad-size-mismatch.safetensors", one({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}))
    write("safetensors", "bad-missing-shape.safetensors", one({"dtype": "F32", "data_offsets": [0, 16]}))
    write("safetensors", "bad-entry-type.safetensors", st({"a": 5}))
    write("safetensors", "bad-overlap.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 16))
    write("safetensors", "bad-duplicate.safetensors",
          st(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))


def config_corpus():
    base = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
            "intermediate_size": 128, "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 10000.0},
            "dtype": "bfloat16"}
    write("config", "ok-llama.json", json.dumps(base))
    write("config", "ok-qwen2-old-style.json", json.dumps({**base, "architectures": ["Qwen2ForCausalLM"],
                                                           "rope_theta": 1e6, "torch_dtype": "bfloat16",
                                                           "tie_word_embeddings": True}))
    write("config", "ok-mixtral.json", json.dumps({**base, "architectures": ["MixtralForCausalLM"],
                                                   "num_local_experts": 4, "num_experts_per_tok": 2}))
    write("config", "bad-empty.json", "")
    write("config", "bad-truncated.json", json.dumps(base)[:40])
    write("config", "bad-array.json", "[]")
    write("config", "bad-arch.json", json.dumps({**base, "architectures": ["GPT2LMHeadModel"]}))
    write("config", "bad-arch-type.json", json.dumps({**base, "architectures": [5]}))
    write("config", "bad-hidden-string.json", json.dumps({**base, "hidden_size": "64"}))
    write("config", "bad-hidden-zero.json", json.dumps({**base, "hidden_size": 0}))
    write("config", "bad-kv-heads.json", json.dumps({**base, "num_key_value_heads": 3}))
    write("config", "bad-heads-negative.json", json.dumps({**base, "num_attention_heads": -4}))
    write("config", "bad-huge-int.json", json.dumps(base).replace("100,", "1" + "0" * 30 + ","))
    write("config", "bad-moe-no-experts.json", json.dumps({**base, "architectures": ["MixtralForCausalLM"]}))
    write("config", "bad-experts-used.json", json.dumps({**base, "architectures": ["MixtralForCausalLM"],
                                                         "num_local_experts": 2, "num_experts_per_tok": 3}))
    write("config", "bad-rope.json", json.dumps({**base, "rope_parameters": {"rope_theta": "big"}}))


if __name__ == "__main__":
    gguf_corpus()
    safetensors_corpus()
    config_corpus()
