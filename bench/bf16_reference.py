#!/usr/bin/env python3
"""How far PyTorch's own BF16 forward lands from its FP32 forward on llama-8m: the yardstick for
the CUDA engine's BF16 logit tolerance (issue 11). Runs on the GPU machine:

    python3 bench/bf16_reference.py [MODEL_DIR]

Uses the token pattern of tests/cuda/test_cuda_engine.cpp (2 sequences of 96: BOS, 47 random
ids, then a repeat) so the figures compare with that test's, and reports max |Δlogit| and the
mean KLD(fp32 ‖ bf16) for SDPA and eager attention, and for F16.
"""
import sys

import torch
from transformers import AutoModelForCausalLM


def test_tokens(B, T, vocab):
    t = [0] * (B * T)
    s = 12345
    mask = (1 << 64) - 1
    for b in range(B):
        for i in range(T):
            s = (s * 6364136223846793005 + 1442695040888963407) & mask
            idx = b * T + i
            if i == 0:
                t[idx] = 0
            elif i >= T // 2:
                t[idx] = t[b * T + i - T // 2 + 1]
            else:
                t[idx] = (s >> 33) % vocab
    return torch.tensor(t, dtype=torch.long).view(B, T)


def logits(model_dir, dtype, attn, ids):
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    m = m.to("cuda").eval()
    with torch.no_grad():
        return m(ids.to("cuda")).logits.float()


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else "examples/models/llama-8m"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ids = test_tokens(2, 96, 4096)
    ref = logits(model_dir, torch.float32, "eager", ids)
    lref = torch.log_softmax(ref, -1)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for dtype in (torch.bfloat16, torch.float16):
        for attn in ("sdpa", "eager"):
            got = logits(model_dir, dtype, attn, ids)
            lgot = torch.log_softmax(got, -1)
            kld = (lref.exp() * (lref - lgot)).sum(-1).mean().item()
            print(f"{str(dtype):15s} {attn:5s}: max |dlogit| {(got - ref).abs().max().item():.4f}, "
                  f"mean KLD {kld:.3g}")


if __name__ == "__main__":
    main()
