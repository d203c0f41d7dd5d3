"""Shared by bench/make_*_shape.py: saves a randomly initialized checkpoint for timing runs."""
import os
import shutil


def save_shape(model, out, tokenizer_dir):
    """Writes `model` as safetensors to `out` with the tokenizer files of `tokenizer_dir`, and
    prints its parameter count."""
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(tokenizer_dir, f)):
            shutil.copy(os.path.join(tokenizer_dir, f), out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {n / 1e9:.3f} B parameters, {type(model).__name__}")
