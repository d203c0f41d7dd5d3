#!/usr/bin/env bash
# The real `quantlens sweep --gpu` on a Llama-3-8B-shaped checkpoint, end to end (issue 21),
# run on the GPU machine from the repository root:
#   bench/gpu_sweep_8b.sh QUANTLENS_BIN CKPT_DIR EVAL_TXT [OUT_DIR] [SWEEP ARGS...]
# CKPT_DIR is written by ../shared/tools/make_llama3_8b_shape.py when it does not exist yet.
# Prints the wall time from the command's start (load included), items/s, peak host RSS
# (GNU time), and GPU SM busy % and memory sampled once a second by nvidia-smi.
set -euo pipefail
BIN=$1 CKPT=$2 EVAL=$3 OUT=${4:-/tmp/gpu-sweep-8b}
shift 4 || shift $#
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
STORE="$OUT/jobs.sqlite"
rm -f "$STORE"*
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
    > "$OUT/smi.csv" &
SMI=$!
start=$(date +%s.%N)
# Peak RSS of the child from getrusage (GNU time is not on every machine).
python3 - "$OUT" "$BIN" sweep "$CKPT" --eval "$EVAL" --tokens 8192 --gpu --store "$STORE" "$@" <<'PY' \
    || { tail -20 "$OUT/sweep.err"; kill $SMI; exit 1; }
import resource, subprocess, sys
out, cmd = sys.argv[1], sys.argv[2:]
with open(f"{out}/sweep.out", "w") as o, open(f"{out}/sweep.err", "w") as e:
    rc = subprocess.call(cmd, stdout=o, stderr=e)
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(f"{out}/rss_kb", "w").write(str(rss_kb))
sys.exit(rc)
PY
end=$(date +%s.%N)
kill $SMI
python3 - "$OUT" "$start" "$end" <<'PY'
import re, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
err = open(f"{out}/sweep.err").read()
rss = int(open(f"{out}/rss_kb").read())
util, mem = [], []
for line in open(f"{out}/smi.csv"):
    try:
        u, m = (float(x) for x in line.split(","))
    except ValueError:
        continue
    util.append(u); mem.append(m)
busy = [u for u in util if u > 0]
print(f"wall {end - start:.1f} s from the command's start; peak host RSS {rss / 2**20:.2f} GiB; "
      f"GPU busy {sum(util) / max(1, len(util)):.0f} % of {len(util)} 1-s samples "
      f"({100 * len(busy) / max(1, len(util)):.0f} % of samples > 0); peak GPU memory "
      f"{max(mem or [0]) / 1024:.1f} GiB")
PY
grep -E "sweep: job|items" "$OUT/sweep.err" | tail -3 || true
