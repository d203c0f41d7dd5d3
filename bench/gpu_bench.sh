#!/usr/bin/env bash
# GPU benchmark (issue 11), run on the GPU machine from the repository root:
#   bench/gpu_bench.sh [BUILD_DIR] [OUT_DIR]
# BUILD_DIR holds ql_gpu_bench (cmake -DQUANTLENS_CUDA=ON, target ql_gpu_bench). Runs our
# engine and the PyTorch + transformers baseline on the same Llama-3-8B shapes, 8,192 tokens
# in 16 sequences of 512, one after the other on the same GPU, and prints a summary.
set -euo pipefail
BUILD=${1:-build-gpu}
OUT=${2:-/tmp/gpu-bench}
mkdir -p "$OUT"
BIN=$(find "$BUILD" -name ql_gpu_bench -type f | head -1)
[ -x "$BIN" ] || { echo "gpu_bench.sh: ql_gpu_bench not found under $BUILD" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$BIN" --tokens 8192 --ctx 512 --json "$OUT/ours.json" > /dev/null
PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/gpu_torch_bench.py" --tokens 8192 --ctx 512 \
    --json "$OUT/torch.json" > /dev/null
python3 - "$OUT/ours.json" "$OUT/torch.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
e = o["eval"]; s = o["sweep_extrapolated"]
peak = t["bf16_gemm_tflops"]
print(f"device: {o['device']}")
print(f"bf16 GEMM (8192^3, torch): {peak:.0f} TFLOP/s")
print(f"ours : {e['tokens_per_s']:.0f} tokens/s, {e['tflops_2x_params']:.0f} TFLOP/s "
      f"({100 * e['tflops_2x_params'] / peak:.0f} % of the GEMM roofline)")
for k in ("sdpa", "eager"):
    r = t[k]
    print(f"torch {k:5s}: {r['tokens_per_s']:.0f} tokens/s, {r['tflops_2x_params']:.0f} TFLOP/s; "
          f"ours / torch = {e['tokens_per_s'] / r['tokens_per_s']:.2f}x")
print(f"sweep: prepare {o['sweep_prepare_s']:.2f} s; evaluate from layer 0 "
      f"{o['evaluate_from_s'][0]:.3f} s, from the head {o['evaluate_from_s'][-1]:.3f} s")
print(f"ESTIMATE, not a measurement (bench/gpu_pipeline.sh measures the real sweep): full sweep "
      f"{s['tensors']} tensors x 8 types extrapolated: {s['seconds_8_types']:.0f} s "
      f"({s['seconds_8_types'] / 60:.2f} min), mean {s['per_unit_mean_s']:.3f} s per unit")
naive = 226 * 8 * 8192 / t["sdpa"]["tokens_per_s"]
print(f"naive torch SDPA sweep (full forward per unit): {naive:.0f} s ({naive / 60:.1f} min)")
PY
