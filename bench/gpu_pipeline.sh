#!/usr/bin/env bash
# The whole pipeline on one GPU with the real CLI, end to end (issue 21), from the repository
# root of the GPU machine:
#   bench/gpu_pipeline.sh QUANTLENS_BIN CKPT_DIR CALIB_TXT EVAL_TXT [OUT_DIR]
# CKPT_DIR must exist (../shared/tools/make_llama3_8b_shape.py writes the 8B shape). Steps:
#   1 calibrate --gpu            imatrix over 100 chunks of 512 of CALIB_TXT
#   2 sweep --gpu --imatrix      8 default types, 8,192 tokens of CALIB_TXT (the sweep text)
#   3 quantize --preset Q4_K_M   with the imatrix: the size budget  } on the CPU while the
#   6 quantize --preset Q3_K_M   with the imatrix                    } GPU sweeps (step 2)
#   4 plan --target-size         the recipe at exactly that size
#   5 quantize --recipe          with the imatrix
#   7 verify --gpu               the three files over 100 chunks of EVAL_TXT (held out), with
#                                llama.cpp's numerics (verify's default)
# Steps 3 and 6 need only the imatrix, so they run on the host's cores (all but two, which the
# sweep's host thread and the driver keep) while step 2 keeps the GPU busy, as a user with one
# machine would run them. For each step: wall time from the command's start, peak host RSS
# (getrusage of the child), GPU busy % and peak GPU memory (nvidia-smi sampled every 200 ms
# inside the step's window). The pipeline's wall time is from the first step's start to the
# last step's end. Writes OUT_DIR/pipeline.json and prints a table.
set -euo pipefail
BIN=$1 CKPT=$2 CALIB=$3 EVAL=$4 OUT=${5:-/tmp/gpu-pipeline}
mkdir -p "$OUT"
rm -f "$OUT"/jobs.sqlite* "$OUT"/*.gguf "$OUT"/imatrix.dat "$OUT"/recipe.json "$OUT"/steps.tsv
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 200 > "$OUT/smi.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT

# step NAME CMD...: runs CMD with stdout/stderr in OUT/NAME.{out,err}; appends a timing row.
step() {
    local name=$1
    shift
    python3 - "$OUT" "$name" "$@" <<'PY'
import resource, subprocess, sys, time
out, name, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.time()
with open(f"{out}/{name}.out", "w") as o, open(f"{out}/{name}.err", "w") as e:
    rc = subprocess.call(cmd, stdout=o, stderr=e)
t1 = time.time()
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(f"{out}/steps.tsv", "a") as f:
    f.write(f"{name}\t{t0}\t{t1}\t{rss_kb}\t{rc}\n")
print(f"{name}: rc {rc}, {t1 - t0:.1f} s", flush=True)
if rc != 0:
    print(open(f"{out}/{name}.err").read()[-3000:])
    sys.exit(rc)
PY
}

STORE="$OUT/jobs.sqlite"
step calibrate "$BIN" calibrate "$CKPT" --text "$CALIB" --chunks 100 --batch 8 --gpu \
    -o "$OUT/imatrix.dat"
CPU_THREADS=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))
( step quantize_q4km "$BIN" --threads "$CPU_THREADS" quantize "$CKPT" --preset Q4_K_M \
      --imatrix "$OUT/imatrix.dat" -o "$OUT/Q4_K_M.gguf" &&
  step quantize_q3km "$BIN" --threads "$CPU_THREADS" quantize "$CKPT" --preset Q3_K_M \
      --imatrix "$OUT/imatrix.dat" -o "$OUT/Q3_K_M.gguf" ) &
QUANTS=$!
step sweep "$BIN" sweep "$CKPT" --eval "$CALIB" --tokens 8192 --gpu --imatrix "$OUT/imatrix.dat" \
    --store "$STORE"
wait $QUANTS
SIZE=$(stat -c %s "$OUT/Q4_K_M.gguf")
step plan "$BIN" plan 1 --store "$STORE" --target-size "$SIZE" -o "$OUT/recipe.json"
step quantize_recipe "$BIN" quantize "$CKPT" --recipe "$OUT/recipe.json" \
    --imatrix "$OUT/imatrix.dat" -o "$OUT/recipe.gguf"
step verify "$BIN" verify "$OUT/recipe.gguf" "$OUT/Q4_K_M.gguf" "$OUT/Q3_K_M.gguf" \
    --base "$CKPT" --text "$EVAL" --chunks 100 --gpu \
    --presets none --out-dir "$OUT/verify" --json "$OUT/verify.json"
kill $SMI 2>/dev/null || true
sleep 0.5

python3 - "$OUT" <<'PY'
import csv, datetime, json, sys
out = sys.argv[1]
samples = []
for row in csv.reader(open(f"{out}/smi.csv")):
    try:
        ts = datetime.datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
        samples.append((ts, float(row[1]), float(row[2])))
    except (ValueError, IndexError):
        continue
steps, first, last = [], None, None
print(f"{'step':<16} {'wall s':>8} {'host RSS GiB':>12} {'GPU busy %':>10} {'GPU mem GiB':>11}")
for line in open(f"{out}/steps.tsv"):
    name, t0, t1, rss, rc = line.split("\t")
    t0, t1 = float(t0), float(t1)
    win = [s for s in samples if t0 <= s[0] <= t1]
    busy = sum(s[1] for s in win) / len(win) if win else 0.0
    mem = max((s[2] for s in win), default=0.0) / 1024
    first = t0 if first is None else min(first, t0)
    last = t1 if last is None else max(last, t1)
    steps.append({"step": name, "wall_s": round(t1 - t0, 1), "peak_rss_gib": round(int(rss) / 2**20, 2),
                  "gpu_busy_pct": round(busy), "gpu_mem_peak_gib": round(mem, 1), "rc": int(rc)})
    print(f"{name:<16} {t1 - t0:>8.1f} {int(rss) / 2**20:>12.2f} {busy:>10.0f} {mem:>11.1f}")
total = (last - first) if first is not None else 0.0
print(f"{'pipeline wall':<16} {total:>8.1f}   (steps 3 and 6 overlap step 2)")
json.dump({"steps": steps, "total_s": round(total, 1), "gpu": open(f"{out}/gpu.txt").read().strip()},
          open(f"{out}/pipeline.json", "w"), indent=1)
PY
