#!/usr/bin/env python3
"""Does transformers accept a quantization_config written by `quantlens plan --format gptq
--export-gptq FILE`?

Usage: python3 bench/check_gptq_config.py FILE.json [FILE.json ...]

For each file: builds the config the way transformers does when it reads a checkpoint's
config.json (AutoQuantizationConfig.from_dict, dispatching on quant_method to GPTQConfig,
whose post_init checks bits, group_size and damp_percent), then prints ACCEPTED or REJECTED
with the error, the fields transformers keeps, and the keys it drops (it passes unknown keys
such as `dynamic` on as **kwargs and may not keep them; GPTQModel reads `dynamic` from the
checkpoint's own file).

Controls (always run, so the check is seen to be able to fail): the seed's export (base
`bits` 6) must be REJECTED; a plain 4-bit g128 config must be ACCEPTED.

Needs transformers only (tested with 5.17; no optimum, no GPTQModel, no GPU, no network).
Exit status: 0 when every FILE is accepted and both controls behave, 1 otherwise.
"""
import json
import sys


def check(cfg):
    from transformers.quantizers.auto import AutoQuantizationConfig

    try:
        q = AutoQuantizationConfig.from_dict(dict(cfg))
    except Exception as e:  # what transformers raises is the answer we want
        return False, f"{type(e).__name__}: {e}", {}, []
    d = q.to_dict()
    kept = {k: d[k] for k in ("quant_method", "bits", "group_size", "sym", "desc_act",
                              "checkpoint_format", "damp_percent", "true_sequential")
            if k in d}
    dropped = sorted(k for k in cfg if k not in d)
    return True, type(q).__name__, kept, dropped


def report(name, cfg):
    ok, what, kept, dropped = check(cfg)
    print(f"{name}: {'ACCEPTED' if ok else 'REJECTED'} ({what})")
    if ok:
        print(f"  kept: {json.dumps({k: str(v) for k, v in kept.items()})}")
        print(f"  dropped by transformers' GPTQConfig: {dropped if dropped else 'nothing'}")
        if "dynamic" in cfg:
            plus = sum(1 for k in cfg["dynamic"] if k.startswith("+:"))
            minus = sum(1 for k in cfg["dynamic"] if k.startswith("-:"))
            print(f"  file's dynamic: {plus} '+:' overrides, {minus} '-:' exclusions")
    return ok


def main(paths):
    import transformers

    print(f"transformers {transformers.__version__}")
    good = True
    seed = {"quant_method": "gptq", "bits": 6, "group_size": 128, "desc_act": False,
            "sym": True, "dynamic": {"+:^model\\.layers\\.0\\.mlp\\.down_proj$": {"bits": 7}}}
    if report("control: seed export, bits 6 (must be rejected)", seed):
        good = False
        print("  CONTROL FAILED: transformers accepted 6 bits")
    plain = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False,
             "sym": True, "damp_percent": 0.01, "checkpoint_format": "gptq"}
    if not report("control: plain 4-bit g128 (must be accepted)", plain):
        good = False
    for p in paths:
        with open(p) as f:
            cfg = json.load(f)
        good = report(p, cfg) and good
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
