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


def gguf_overlap():
    # Two tensors, 'b' inside 'a''s bytes (both aligned, both inside the file).
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, 0)
    head += gstr("a") + struct.pack("<IqIQ", 1, 16, 0, 0) + gstr("b") + struct.pack("<IqIQ", 1, 8, 0, 32)
    head += b"\0" * ((32 - len(head) % 32) % 32)
    write("gguf", "bad-overlap.gguf", head + struct.pack("<16f", *range(16)))


def imatrix_legacy(entries, trailer=(3, "wiki.txt"), n_entries=None):
    out = struct.pack("<i", len(entries) if n_entries is None else n_entries)
    for name, calls, values in entries:
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", calls, len(values))
        out += struct.pack(f"<{len(values)}f", *values)
    if trailer is not None:
        out += struct.pack("<i", trailer[0]) + struct.pack("<i", len(trailer[1])) + trailer[1].encode()
    return out


def imatrix_corpus():
    e = [("blk.0.attn_q.weight", 2, [2.0] * 8), ("blk.0.ffn_down.weight", 1, [1.0, 0.5, 0.25, 0.0])]
    ok = imatrix_legacy(e)
    write("imatrix", "ok-legacy.dat", ok)
    write("imatrix", "ok-legacy-no-trailer.dat", imatrix_legacy(e, trailer=None))
    write("imatrix", "ok-legacy-zero-calls.dat", imatrix_legacy([("t", 0, [1.0, 2.0])]))
    write("imatrix", "bad-empty.dat", b"")
    write("imatrix", "bad-zero-entries.dat", struct.pack("<i", 0))
    write("imatrix", "bad-negative-entries.dat", struct.pack("<i", -5))
    for n in (3, 6, 10, 30, len(ok) - 3):
        write("imatrix", f"bad-truncated-{n}.dat", ok[:n])
    write("imatrix", "bad-huge-count.dat", imatrix_legacy(e, n_entries=2**31 - 1))
    write("imatrix", "bad-huge-name.dat", struct.pack("<ii", 1, 2**31 - 1) + b"x" * 8)
    write("imatrix", "bad-negative-name.dat", struct.pack("<ii", 1, -1) + b"x" * 8)
    write("imatrix", "bad-negative-calls.dat", imatrix_legacy([("t", -1, [1.0])]))
    write("imatrix", "bad-nan.dat", imatrix_legacy([("t", 1, [float("nan")])]))
    write("imatrix", "bad-negative-value.dat", imatrix_legacy([("t", 1, [-1.0])]))
    write("imatrix", "bad-huge-values.dat", struct.pack("<ii", 1, 1) + b"t" + struct.pack("<ii", 1, 2**31 - 1))
    write("imatrix", "bad-trailer-name.dat", imatrix_legacy(e, trailer=None) + struct.pack("<ii", 3, 100) + b"abc")
    # GGUF imatrix: NAME.in_sum2 F32 [n_per_row, n_mat], NAME.counts F32 [1, n_mat]
    meta = [("general.type", 8, gstr("imatrix")),
            ("imatrix.datasets", 9, struct.pack("<IQ", 8, 1) + gstr("wiki.txt")),
            ("imatrix.chunk_count", 4, struct.pack("<I", 3)),
            ("imatrix.chunk_size", 4, struct.pack("<I", 512))]
    sums = struct.pack("<8f", *[4.0] * 8)
    two = struct.pack("<2f", 2.0, 0.0)
    write("imatrix", "ok-gguf.gguf", gguf(meta, [("blk.0.attn_q.weight.in_sum2", [4, 2], 0, sums),
                                               ("blk.0.attn_q.weight.counts", [1, 2], 0, two)]))
    write("imatrix", "bad-gguf-no-entries.gguf", gguf(meta, []))
    write("imatrix", "bad-gguf-no-counts.gguf", gguf(meta, [("t.in_sum2", [4, 2], 0, sums)]))
    write("imatrix", "bad-gguf-count-mismatch.gguf", gguf(meta, [("t.in_sum2", [4, 2], 0, sums),
                                                                  ("t.counts", [1], 0, two[:4])]))
    write("imatrix", "bad-gguf-f16.gguf", gguf(meta, [("t.in_sum2", [8], 1, sums[:16]),
                                                       ("t.counts", [1], 0, two[:4])]))
    write("imatrix", "bad-gguf-datasets-type.gguf",
          gguf([("imatrix.datasets", 4, struct.pack("<I", 1))], [("t.in_sum2", [4], 0, sums[:16]),
                                                                 ("t.counts", [1], 0, two[:4])]))
    write("imatrix", "bad-gguf-nan-count.gguf", gguf(meta, [("t.in_sum2", [4], 0, sums[:16]),
                                                             ("t.counts", [1], 0, struct.pack("<f", float("nan")))]))
    write("imatrix", "bad-gguf-huge-count.gguf", gguf(meta, [("t.in_sum2", [4], 0, sums[:16]),
                                                              ("t.counts", [1], 0, struct.pack("<f", 1e30))]))
    write("imatrix", "bad-gguf-truncated.gguf", gguf(meta, [("t.in_sum2", [4], 0, sums[:16])])[:60])


def recipe_corpus():
    r = {"format": "quantlens-recipe", "version": 1, "model": "m", "model_hash": "abc",
         "job_id": 3, "metric": "kld", "budget": {"kind": "bpw", "value": 4.5},
         "predicted": {"size_bytes": 1000, "bpw": 4.5, "kld": 0.01}, "default_type": "Q4_K",
         "tensors": {"blk.0.attn_q.weight": "Q5_K", "blk.0.ffn_down.weight": "Q6_K", "output.weight": "Q8_0"},
         "notes": ["a note"]}
    write("recipe", "ok-full.json", json.dumps(r, indent=1))
    write("recipe", "ok-minimal.json", json.dumps({"tensors": {}}))
    write("recipe", "ok-null-kld.json", json.dumps({**r, "predicted": {"size_bytes": 5, "kld": None}}))
    write("recipe", "ok-full.yaml", "format: quantlens-recipe\nversion: 1\nmodel: m\njob_id: 3\n"
          "budget: {kind: size, value: 5373408}\npredicted: {size_bytes: 5373408, bpw: 5.12, kld: 0.0116}\n"
          "default_type: Q4_K\ntensors:\n  \"blk.0.attn_q.weight\": Q5_K\n  blk.1.ffn_up.weight: IQ4_XS\n"
          "notes:\n  - \"x: y\"\n")
    write("recipe", "ok-anchors.yaml", "notes: [&t Q4_K]\ntensors:\n  a.weight: *t\n  b.weight: *t\n")
    write("recipe", "ok-flow.yaml", "tensors: {a: Q4_0, b: F16}\nnotes: [one, two]\n")
    write("recipe", "bad-empty.json", "")
    write("recipe", "bad-truncated.json", json.dumps(r)[:50])
    write("recipe", "bad-no-tensors.json", json.dumps({"model": "m"}))
    write("recipe", "bad-tensors-list.yaml", "tensors: [a, b]\n")
    write("recipe", "bad-type.json", json.dumps({"tensors": {"a": "Q9_K"}}))
    write("recipe", "bad-type-number.json", json.dumps({"tensors": {"a": 4}}))
    write("recipe", "bad-default-type.json", json.dumps({"tensors": {}, "default_type": "nope"}))
    write("recipe", "bad-model-list.json", json.dumps({**r, "model": ["m"]}))
    write("recipe", "bad-notes-numbers.json", json.dumps({**r, "notes": [1, 2]}))
    write("recipe", "bad-job-id-string.yaml", "job_id: twelve\ntensors: {}\n")
    write("recipe", "bad-map-key.yaml", "tensors: {}\n? [a, b]\n: c\n")
    write("recipe", "bad-size-negative.json", json.dumps({**r, "predicted": {"size_bytes": -5}}))
    write("recipe", "bad-size-nan.yaml", "predicted: {size_bytes: nan}\ntensors: {}\n")
    write("recipe", "bad-size-huge.json", json.dumps({**r, "predicted": {"size_bytes": 1e300}}))
    write("recipe", "bad-yaml.yaml", "tensors: {a: [\n")
    write("recipe", "bad-scalar.yaml", "just text\n")
    write("recipe", "bad-unknown-alias.yaml", "tensors: {a: *nope}\n")
    # Billion laughs, small: 5 levels of 5 aliases → 3125 leaves once expanded.
    lol = "a: &a [x, x, x, x, x]\n"
    for i, name in enumerate("bcde"):
        prev = "abcd"[i]
        lol += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    write("recipe", "bad-laughs.yaml", lol + "tensors: {}\nnotes: *e\n")


BYTE_CHARS = None


def byte_level(bs):
    global BYTE_CHARS
    if BYTE_CHARS is None:
        keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
        table, n = {}, 0
        for b in range(256):
            if b in keep:
                table[b] = chr(b)
            else:
                table[b] = chr(256 + n)
                n += 1
        BYTE_CHARS = table
    return "".join(BYTE_CHARS[b] for b in bs)


def tokenizer_corpus():
    vocab = {byte_level([b]): b for b in range(256)}
    merges = []
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (byte_level(b" "), "w")]:
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
    added = [{"id": len(vocab), "content": "<|begin_of_text|>", "special": True}]
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    text = "hello world <|begin_of_text|> héllo\n\t 123 ☃".encode()
    write("tokenizer", "ok-bytelevel.json", json.dumps(tok).encode() + b"\0" + text)
    write("tokenizer", "ok-no-text.json", json.dumps(tok).encode())
    write("tokenizer", "ok-invalid-utf8-text.json", json.dumps(tok).encode() + b"\0ab\xff\xfe")
    split = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    write("tokenizer", "ok-llama3-split.json", json.dumps({**tok, "pre_tokenizer": split}).encode() + b"\0" + text)
    pairs = {**tok, "model": {**tok["model"], "merges": [m.split(" ") for m in merges]}}
    write("tokenizer", "ok-merge-pairs.json", json.dumps(pairs).encode() + b"\0" + text)
    lit = {**tok, "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated"}}
    write("tokenizer", "ok-split-string.json", json.dumps(lit).encode() + b"\0" + text)
    write("tokenizer", "bad-empty.json", b"")
    write("tokenizer", "bad-truncated.json", json.dumps(tok).encode()[:100])
    write("tokenizer", "bad-no-model.json", json.dumps({"added_tokens": []}).encode())
    write("tokenizer", "bad-unigram.json", json.dumps({**tok, "model": {"type": "Unigram", "vocab": []}}).encode())
    write("tokenizer", "bad-normalizer.json", json.dumps({**tok, "normalizer": {"type": "NFC"}}).encode())
    write("tokenizer", "bad-vocab-gap.json", json.dumps({**tok, "model": {**tok["model"], "vocab": {"a": 0, "b": 5}}}).encode())
    write("tokenizer", "bad-vocab-negative.json", json.dumps({**tok, "model": {**tok["model"], "vocab": {"a": -1}}}).encode())
    write("tokenizer", "bad-vocab-huge.json", json.dumps({**tok, "model": {**tok["model"], "vocab": {"a": 2**31 - 1}}}).encode())
    write("tokenizer", "bad-added-negative.json", json.dumps({**tok, "added_tokens": [{"id": -3, "content": "x"}]}).encode())
    write("tokenizer", "bad-vocab-string-id.json", json.dumps({**tok, "model": {**tok["model"], "vocab": {"a": "0"}}}).encode())
    write("tokenizer", "bad-merge-no-space.json", json.dumps({**tok, "model": {**tok["model"], "merges": ["ab"]}}).encode())
    write("tokenizer", "bad-regex.json", json.dumps({**tok, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}}}).encode())
    write("tokenizer", "bad-pretokenizer.json", json.dumps({**tok, "pre_tokenizer": {"type": "Whitespace"}}).encode())
    write("tokenizer", "bad-split-merged.json", json.dumps({**tok, "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Merged"}}).encode())
    write("tokenizer", "bad-byte-fallback.json", json.dumps({**tok, "model": {**tok["model"], "byte_fallback": True}}).encode())
    write("tokenizer", "bad-added-no-id.json", json.dumps({**tok, "added_tokens": [{"content": "x"}]}).encode())


def st_index_corpus():
    def shard(tensors):
        header, data = {}, b""
        for name, vals in tensors:
            b = struct.pack(f"<{len(vals)}f", *vals)
            header[name] = {"dtype": "F32", "shape": [len(vals)], "data_offsets": [len(data), len(data) + len(b)]}
            data += b
        return st(header, data)

    def index(weight_map, shards):
        out = json.dumps({"metadata": {"total_size": 16}, "weight_map": weight_map}).encode()
        for name, body in shards:
            out += b"\n--- " + name.encode() + b"\n" + body
        return out

    s1 = shard([("a", [1, 2]), ("b", [3])])
    s2 = shard([("c", [4, 5, 6])])
    wm = {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
          "c": "model-00002-of-00002.safetensors"}
    both = [("model-00001-of-00002.safetensors", s1), ("model-00002-of-00002.safetensors", s2)]
    write("st_index", "ok-two-shards", index(wm, both))
    write("st_index", "ok-one-shard", index({"c": "s.safetensors"}, [("s.safetensors", s2)]))
    write("st_index", "ok-empty-map", index({}, []))
    write("st_index", "bad-empty", b"")
    write("st_index", "bad-json", b'{"weight_map": {')
    write("st_index", "bad-no-map", json.dumps({"metadata": {}}).encode())
    write("st_index", "bad-map-list", json.dumps({"weight_map": ["a"]}).encode())
    write("st_index", "bad-shard-not-string", index({"a": 5}, []))
    write("st_index", "bad-missing-shard", index(wm, both[:1]))
    write("st_index", "bad-shard-slash", index({"a": "../s.safetensors"}, [("s.safetensors", s1)]))
    write("st_index", "bad-shard-dotdot", index({"a": ".."}, []))
    write("st_index", "bad-shard-empty-name", index({"a": ""}, []))
    write("st_index", "bad-wrong-shard", index({**wm, "a": "model-00002-of-00002.safetensors"}, both))
    write("st_index", "bad-unlisted-tensor", index({k: v for k, v in wm.items() if k != "b"}, both))
    write("st_index", "bad-listed-not-present", index({**wm, "d": "model-00002-of-00002.safetensors"}, both))
    write("st_index", "bad-duplicate-across-shards",
          index({"a": "x.safetensors", "c": "y.safetensors"}, [("x.safetensors", s1), ("y.safetensors", shard([("a", [1])]))]))
    write("st_index", "bad-corrupt-shard", index(wm, [both[0], (both[1][0], s2[:20])]))


def zoo_corpus():
    write("zoo", "ok-minimal.yaml", "models:\n  - fp: model\n    text: eval.txt\n")
    write("zoo", "ok-full.yaml", "base_dir: .\ndefaults: {text: eval.txt, types: [Q4_K, Q2_K], tokens: 1024, ctx: 256,\n"
          "           granularity: tensor}\nmodels:\n  - name: m1\n    fp: model\n    quants: [model-Q4_K.gguf]\n"
          "  - name: m2\n    fp: ./model\n    types: [IQ4_XS]\n    granularity: layer\n    ctx: 8\n    tokens: 8\n")
    write("zoo", "bad-empty.yaml", "")
    write("zoo", "bad-no-models.yaml", "defaults: {text: eval.txt}\n")
    write("zoo", "bad-models-empty.yaml", "models: []\n")
    write("zoo", "bad-models-map.yaml", "models: {a: b}\n")
    write("zoo", "bad-no-fp.yaml", "models:\n  - name: x\n    text: eval.txt\n")
    write("zoo", "bad-fp-missing.yaml", "models:\n  - fp: nowhere\n    text: eval.txt\n")
    write("zoo", "bad-text-missing.yaml", "models:\n  - fp: model\n")
    write("zoo", "bad-text-dir.yaml", "models:\n  - fp: model\n    text: model\n")
    write("zoo", "bad-duplicate-name.yaml", "defaults: {text: eval.txt}\nmodels:\n  - fp: model\n  - fp: model\n")
    write("zoo", "bad-type.yaml", "models:\n  - fp: model\n    text: eval.txt\n    types: [Q9_K]\n")
    write("zoo", "bad-types-scalar.yaml", "models:\n  - fp: model\n    text: eval.txt\n    types: Q4_K\n")
    write("zoo", "bad-no-types.yaml", "models:\n  - fp: model\n    text: eval.txt\n    types: []\n")
    write("zoo", "bad-ctx.yaml", "models:\n  - fp: model\n    text: eval.txt\n    ctx: 4\n")
    write("zoo", "bad-tokens-string.yaml", "models:\n  - fp: model\n    text: eval.txt\n    tokens: many\n")
    write("zoo", "bad-granularity.yaml", "models:\n  - fp: model\n    text: eval.txt\n    granularity: row\n")
    write("zoo", "bad-quant-missing.yaml", "models:\n  - fp: model\n    text: eval.txt\n    quants: [no.gguf]\n")
    write("zoo", "bad-quants-scalar.yaml", "models:\n  - fp: model\n    text: eval.txt\n    quants: x.gguf\n")
    write("zoo", "bad-yaml.yaml", "models: [\n")
    write("zoo", "bad-fp-map.yaml", "models:\n  - fp: {a: b}\n    text: eval.txt\n")


def params_corpus():
    sweep = {"model": "m", "eval_text": "t.txt", "n_tokens": 1024, "ctx": 256, "types": ["Q4_K"],
             "granularity": "tensor"}
    write("params", "ok-empty-object.json", "{}")
    write("params", "ok-sweep.json", json.dumps(sweep))
    write("params", "ok-sweep-shard.json", json.dumps({**sweep, "shard": {"index": 1, "count": 2}}))
    write("params", "ok-compare.json", json.dumps({"fp": "a", "quant": "b.gguf", "text": "t", "ctx": 64, "chunks": 2}))
    write("params", "ok-zoo.json", json.dumps({"zoo": "z.yaml", "models": [{"name": "m", "fp": "m", "text": "t",
        "types": ["Q4_K"], "tokens": 64, "ctx": 8, "granularity": "tensor", "quants": []}]}))
    write("params", "bad-not-json.json", "{not json")
    write("params", "bad-array.json", "[1, 2]")
    write("params", "bad-shard-range.json", json.dumps({"shard": {"index": 2, "count": 2}}))
    write("params", "bad-shard-scalar.json", json.dumps({"shard": 3}))
    write("params", "bad-shard-types.json", json.dumps({"shard": {"index": "0", "count": 2}}))
    write("params", "bad-shard-float.json", json.dumps({"shard": {"index": 0.5, "count": 2}}))
    write("params", "bad-invalid-utf8.json", b'{"model": "\xff\xfe"}')


def server_corpus():
    write("server", "ok-health", "GET /api/health\n")
    write("server", "ok-jobs", "GET /api/jobs\n")
    write("server", "ok-job", "GET /api/jobs/1\n")
    write("server", "ok-report-data", "GET /api/jobs/1/report-data\n")
    write("server", "ok-events", "GET /api/jobs/1/events\n")
    write("server", "ok-models-roots", "GET /api/models\n")
    write("server", "ok-models-dir", "GET /api/models?path=.\n")
    write("server", "ok-models-gguf", "GET /api/models?path=tiny.gguf\n")
    write("server", "ok-app", "GET /\n")
    write("server", "ok-asset", "GET /assets/app.js\n")
    recipe = {"name": "r1", "format": "json", "recipe": {"tensors": {"blk.0.attn_q.weight": "Q4_K"}, "predicted": {"bpw": 4.5}}}
    write("server", "ok-save-recipe", "POST /api/recipes\n" + json.dumps(recipe))
    write("server", "ok-save-recipe-yaml", "POST /api/recipes\n" + json.dumps({**recipe, "format": "yaml"}))
    write("server", "bad-no-endpoint", "GET /api/nothing\n")
    write("server", "bad-no-job", "GET /api/jobs/99\n")
    write("server", "bad-no-job-events", "GET /api/jobs/99/events\n")
    write("server", "bad-no-asset", "GET /assets/secret.txt\n")
    write("server", "bad-models-escape", "GET /api/models?path=../../etc\n")
    write("server", "bad-models-absent", "GET /api/models?path=none.gguf\n")
    write("server", "bad-pause-done", "POST /api/jobs/1/pause\n")
    write("server", "bad-cancel-absent", "POST /api/jobs/7/cancel\n")
    write("server", "bad-body", "POST /api/jobs\n{not json")
    write("server", "bad-kind", "POST /api/jobs\n" + json.dumps({"kind": "rm"}))
    write("server", "bad-no-model", "POST /api/jobs\n" + json.dumps({"kind": "sweep"}))
    write("server", "bad-option", "POST /api/jobs\n" + json.dumps({"kind": "sweep", "model": "tiny.gguf", "options": {"rm": True}}))
    write("server", "bad-types", "POST /api/jobs\n" + json.dumps({"kind": "sweep", "model": "tiny.gguf", "options": {"types": "Q4_K,,"}}))
    write("server", "bad-spawn", "POST /api/jobs\n" + json.dumps({"kind": "sweep", "model": "tiny.gguf", "options": {"ctx": 64, "types": "Q4_K"}}))
    write("server", "bad-plan-job", "POST /api/jobs\n" + json.dumps({"kind": "plan", "job": 99}))
    write("server", "bad-outpath", "POST /api/jobs\n" + json.dumps({"kind": "calibrate", "model": "tiny.gguf", "options": {"output": "../x/-a"}}))
    write("server", "bad-recipe-name", "POST /api/recipes\n" + json.dumps({**recipe, "name": "../x"}))
    write("server", "bad-recipe-type", "POST /api/recipes\n" + json.dumps({**recipe, "recipe": {"tensors": {"a": "Q9"}}}))
    write("server", "bad-method", "DELETE /api/jobs/1\n")
    write("server", "bad-request-line", "GET\n")


if __name__ == "__main__":
    gguf_corpus()
    gguf_overlap()
    safetensors_corpus()
    config_corpus()
    imatrix_corpus()
    recipe_corpus()
    tokenizer_corpus()
    st_index_corpus()
    zoo_corpus()
    params_corpus()
    server_corpus()
