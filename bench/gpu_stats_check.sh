#!/usr/bin/env bash
# GPU checks of the tap reductions (src/engine/cuda/cuda_stats.h, issue 21), from the repository
# root of a GPU machine:
#   bench/gpu_stats_check.sh [OUT_DIR] [CKPT_8B] [CALIB_8B (../shared/data/calib.txt)]
# 1. builds the CUDA configuration (build-cuda) and runs tests/cuda/test_cuda_stats.cpp, plus
#    the engine tests the head tap touches;
# 2. llama-8m (examples/): calibrate --gpu against the CPU (wall time, imatrix agreement), and
#    quantize --gptq with the Hessians on the GPU against the CPU's (wall time, PPL of each);
# 3. with CKPT_8B (an 8B-shaped checkpoint, e.g. ../shared/tools/make_llama3_8b_shape.py's):
#    calibrate --gpu over 100 chunks of 512 (the issue's 60 s bar) with GPU busy %, then the
#    --gptq Hessians of 64 chunks (sweep --gptq --gpu stops after them: --types with no items).
# STAGES (default "build tests llama8m 8b") picks the parts, so each fits a 10-minute command:
#   STAGES=build bench/gpu_stats_check.sh; STAGES="tests llama8m" ...; STAGES=8b ... OUT CKPT
# Prints everything; the log is what the device queue returns.
set -uo pipefail
STAGES=${STAGES:-build tests llama8m 8b}
has() { [[ " $STAGES " == *" $1 "* ]]; }
OUT=${1:-/tmp/gpustats-check}
CKPT=${2:-}
CAL8=${3:-../shared/data/calib.txt}
mkdir -p "$OUT"
BIN=build-cuda/quantlens
M=examples/models/llama-8m
CAL=examples/data/calib-sample.txt
EV=examples/data/eval-sample.txt
section() { printf '\n===== %s =====\n' "$*"; }

section device
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
git log --oneline -1

if has build; then
section build
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DQUANTLENS_CUDA=ON \
    -DQUANTLENS_CUDA_ARCHS=90-real > "$OUT/configure.log" 2>&1 || tail -30 "$OUT/configure.log"
cmake --build build-cuda -j"$(nproc)" --target quantlens cuda_test_cuda_stats \
    cuda_test_cuda_engine > "$OUT/build.log" 2>&1
echo "build rc $?"
grep -E "error|warning: .*cuda_stats" "$OUT/build.log" | head -40
fi

if has tests; then
section "tests: cuda_test_cuda_stats"
build-cuda/tests/cuda_test_cuda_stats 2>&1 | tee "$OUT/test_cuda_stats.log"
section "tests: cuda_test_cuda_engine (the head tap is in cuda_engine.cpp)"
build-cuda/tests/cuda_test_cuda_engine 2>&1 | tail -40
fi

if has llama8m; then
section "llama-8m calibrate: GPU vs CPU (F16 weights), 24 chunks of 512"
/usr/bin/time -v "$BIN" calibrate "$M" --text "$CAL" --chunks 24 --gpu -o "$OUT/gpu.dat" \
    --force 2> "$OUT/cal-gpu.err"
grep -E "Elapsed|Maximum resident" "$OUT/cal-gpu.err"; tail -3 "$OUT/cal-gpu.err"
/usr/bin/time -v "$BIN" calibrate "$M" --text "$CAL" --chunks 24 --as-f16 -o "$OUT/cpu.dat" \
    --force 2> "$OUT/cal-cpu.err"
grep -E "Elapsed|Maximum resident" "$OUT/cal-cpu.err"; tail -3 "$OUT/cal-cpu.err"
python3 - "$OUT/gpu.dat" "$OUT/cpu.dat" <<'PY'
import struct, sys
def read(path):  # llama.cpp legacy imatrix: n; then name, ncall, nval, values
    d, f = {}, open(path, "rb")
    (n,) = struct.unpack("<i", f.read(4))
    for _ in range(n):
        (ln,) = struct.unpack("<i", f.read(4)); name = f.read(ln).decode()
        ncall, nval = struct.unpack("<ii", f.read(8))
        d[name] = struct.unpack(f"<{nval}f", f.read(4 * nval))
    return d
g, c = read(sys.argv[1]), read(sys.argv[2])
worst, wn = 0.0, ""
for k in c:
    num = sum((a - b) ** 2 for a, b in zip(g[k], c[k])); den = sum(b * b for b in c[k])
    r = (num / den) ** 0.5
    if r > worst: worst, wn = r, k
print(f"imatrix GPU vs CPU: {len(c)} tensors, worst relative L2 {worst:.3g} at {wn}")
PY

section "llama-8m quantize Q4_K_M --gptq (16 chunks): Hessians on GPU vs CPU"
/usr/bin/time -v "$BIN" quantize "$M" --preset Q4_K_M --gptq "$CAL" --gptq-chunks 16 --gpu \
    --summary -o "$OUT/q-gpu.gguf" --force > "$OUT/q-gpu.out" 2> "$OUT/q-gpu.err"
echo "rc $?"; grep -E "Elapsed|Maximum resident|gptq" "$OUT/q-gpu.err" "$OUT/q-gpu.out" | head
/usr/bin/time -v "$BIN" quantize "$M" --preset Q4_K_M --gptq "$CAL" --gptq-chunks 16 \
    --summary -o "$OUT/q-cpu.gguf" --force > "$OUT/q-cpu.out" 2> "$OUT/q-cpu.err"
echo "rc $?"; grep -E "Elapsed|Maximum resident|gptq" "$OUT/q-cpu.err" "$OUT/q-cpu.out" | head
for q in gpu cpu; do
    echo "PPL of q-$q.gguf:"
    "$BIN" eval "$OUT/q-$q.gguf" --text "$EV" --chunks 20 --json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j.get("ppl"))'
done
cmp -l "$OUT/q-gpu.gguf" "$OUT/q-cpu.gguf" | wc -l | sed 's/^/bytes differing GPU vs CPU Hessians: /'

section "verify --gpu --gptq on llama-8m (a Q4_K_M recipe, the Hessians on the GPU and on the CPU)"
"$BIN" quantize "$M" --preset Q4_K_M --save-recipe "$OUT/r.json" -o "$OUT/x.gguf" --summary \
    --force > /dev/null 2>&1
for dev in gpu cpu; do
    flag=$([ $dev = gpu ] && echo --gpu)
    rm -rf "$OUT/v-$dev"
    "$BIN" verify --base "$M" --text "$EV" --recipe "$OUT/r.json" --presets none --gptq "$CAL" \
        --gptq-chunks 8 --chunks 8 --out-dir "$OUT/v-$dev" --no-ggml-numerics $flag 2>&1 | tail -4
done

section "sweep --gpu --gptq on llama-8m (the Hessians on the GPU, 1 type)"
rm -f "$OUT/sweep.sqlite"*
/usr/bin/time -v "$BIN" sweep "$M" --eval "$EV" --tokens 2048 --types Q4_K --granularity class \
    --gpu --gptq "$CAL" --gptq-chunks 8 --store "$OUT/sweep.sqlite" > "$OUT/sweep.out" \
    2> "$OUT/sweep.err"
echo "rc $?"; grep -E "Elapsed|Maximum resident" "$OUT/sweep.err"; tail -15 "$OUT/sweep.out"
tail -5 "$OUT/sweep.err"
fi

if has 8b && [ -n "$CKPT" ] && [ -d "$CKPT" ]; then
    section "8B: calibrate --gpu, 100 chunks of 512, batch 8"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 > "$OUT/smi-cal.csv" &
    SMI=$!
    /usr/bin/time -v "$BIN" calibrate "$CKPT" --text "$CAL8" --chunks 100 --batch 8 --gpu \
        -o "$OUT/8b.dat" --force 2> "$OUT/8b-cal.err"
    kill $SMI
    grep -E "Elapsed|Maximum resident" "$OUT/8b-cal.err"; tail -3 "$OUT/8b-cal.err"
    awk -F, '{s+=$2; n++; if ($3>m) m=$3} END {printf "GPU busy %.0f %% (mean of %d samples), peak %.1f GiB\n", s/n, n, m/1024}' "$OUT/smi-cal.csv"

    section "8B: --gptq Hessians on the GPU, 64 chunks (stopped once quantizing starts)"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 500 > "$OUT/smi-gptq.csv" &
    SMI=$!
    python3 - "$BIN" quantize "$CKPT" --preset Q8_0 --gptq "$CAL8" --gptq-chunks 64 --gpu \
        -o "$OUT/8b-q8.gguf" --force <<'PY'
import resource, signal, subprocess, sys, time
# quantize prints "gptq: Hessians of N tokens collected in X s" once they are: the run is
# stopped there (the CPU's GPTQ rounding of 8B weights is not what is measured).
t0 = time.time()
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
for line in p.stderr:
    print(f"{time.time() - t0:7.1f} s  {line.rstrip()}", flush=True)
    if "collected in" in line or "rror" in line:
        break
    if time.time() - t0 > 420:
        print("stopped after 420 s")
        break
p.send_signal(signal.SIGINT)
time.sleep(1)
p.kill()
p.wait()
print(f"peak host RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.1f} GiB")
PY
    kill $SMI
    awk -F, '{if ($3>m) m=$3} END {printf "peak GPU memory %.1f GiB\n", m/1024}' "$OUT/smi-gptq.csv"
    rm -f "$OUT/8b-q8.gguf"* 
fi
section done
