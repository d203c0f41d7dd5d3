# Sourced by the bench/gpu_*checks.sh scripts on the GPU machine, from the repository root:
# unpacks build-carry/bundle.tar.xz (scripts/device_bundle.sh of the CUDA build) into /tmp/ql,
# puts its libraries and the image's cuBLAS on the loader path, links the checkout to
# /work/main (where the tests look for fixtures) and sets B (build-carry) and Q (quantlens).
B=$PWD/build-carry
rm -rf /tmp/ql; mkdir -p /tmp/ql && tar xJf "$B/bundle.tar.xz" -C /tmp/ql
CUBLAS=$(python3 -c "import nvidia.cublas as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null)
export LD_LIBRARY_PATH=/tmp/ql/lib:$CUBLAS
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
Q=/tmp/ql/bin/quantlens
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }  # a line with the seconds since sourcing
# fresh_results: R=/tmp/res, emptied, tarred into $OUT/r.tgz on exit (job stores left out).
fresh_results() {
  R=/tmp/res; rm -rf $R; mkdir -p $R
  trap 'cd /tmp && tar czf $OUT/r.tgz --exclude="*.sqlite" res' EXIT
}

# fixture_cpu_gpu NAME TEXT RESULTS: tests/fixtures/NAME through the real CLI with and without
# --gpu — eval of 2 chunks of 512 of TEXT against the fixture's transformers log-probs and a sweep
# of 2,048 tokens — then one line comparing the evals and bench/compare_sweeps.py's summary.
fixture_cpu_gpu() {
  local f=$1 text=$2 res=$3 M=tests/fixtures/$1 dev flag
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 60 $Q -q eval $M --text $text --ctx 512 --chunks 2 --base $M/reference.qllogp --json $flag > $res/e-$f-$dev.json 2> $res/e-$f-$dev.err || tail -3 $res/e-$f-$dev.err
    timeout 150 $Q -q sweep $M --eval $text --tokens 2048 $flag --store $res/s-$f-$dev.sqlite --json $res/s-$f-$dev.json > $res/s-$f-$dev.log 2>&1 || tail -3 $res/s-$f-$dev.log
  done
  python3 -c "
import json; c=json.load(open('$res/e-$f-cpu.json')); g=json.load(open('$res/e-$f-gpu.json'))
print('%-14s eval vs transformers: cpu ppl %.5f KLD %.3g top1 %.2f | gpu ppl %.5f KLD %.3g top1 %.2f' % ('$f', c['ppl'], c['kld']['mean'], c['same_top1_pct'], g['ppl'], g['kld']['mean'], g['same_top1_pct']))" || true
  echo "== $f sweep, GPU vs CPU"; python3 bench/compare_sweeps.py $res/s-$f-cpu.json $res/s-$f-gpu.json 2>&1 | tail -8
}

# shape_cpu_gpu SHAPE TEXT RESULTS [GPU-EVAL-RUNS...]: a random-weight checkpoint through the real
# CLI — eval --gpu of 40 chunks of 512 (once per extra argument, run with that environment
# assignment, e.g. QUANTLENS_DELTANET_SEQUENTIAL=1; once plainly without), the CPU engine's
# log-probs on 2 chunks and the GPU's against them, a Q4_K sweep --gpu of 4,096 tokens — then
# one summary line per eval.
shape_cpu_gpu() {
  local S=$1 text=$2 res=$3 names="" run name
  shift 3
  [ $# -eq 0 ] && set -- PLAIN=1
  for run in "$@"; do
    name=shape-gpu-$(echo "$run" | tr -c 'A-Za-z0-9=\n' _ | tr '=' -)
    env "$run" QUANTLENS_PROFILE=1 timeout 300 $Q eval $S --text $text --ctx 512 --chunks 40 --gpu --json > $res/$name.json 2> $res/$name.err || tail -3 $res/$name.err
    names="$names $name"; el "eval --gpu $run"
  done
  timeout 200 $Q -q eval $S --text $text --ctx 512 --chunks 2 --save-logits $res/shape-cpu.qllogp --json > $res/shape-cpu.json 2> $res/shape-cpu.err || tail -3 $res/shape-cpu.err
  el "eval cpu 2 chunks"
  timeout 120 $Q -q eval $S --text $text --ctx 512 --chunks 2 --base $res/shape-cpu.qllogp --gpu --json > $res/shape-gpu-vs-cpu.json 2> $res/shape-gpu-vs-cpu.err || tail -3 $res/shape-gpu-vs-cpu.err
  rm -f $res/shape-cpu.qllogp
  /usr/bin/time -f "shape sweep --gpu %e s wall" timeout 150 $Q -q sweep $S --eval $text --tokens 4096 --types Q4_K --gpu --store /tmp/shape-sweep.sqlite --json $res/shape-sweep.json > $res/shape-sweep.log 2>&1 || tail -3 $res/shape-sweep.log
  tail -2 $res/shape-sweep.log
  el "sweep --gpu of the shape"
  python3 - "$res" $names shape-cpu shape-gpu-vs-cpu <<'PY'
import json, sys
for name in sys.argv[2:]:
    try:
        j = json.load(open(f"{sys.argv[1]}/{name}.json"))
    except Exception as e:
        print(name, "missing", e); continue
    keys = {k: j.get(k) for k in ("ppl", "tokens_scored", "seconds", "tokens_per_second", "peak_gpu_bytes")}
    if "kld" in j: keys["kld_mean"] = j["kld"]["mean"]; keys["top1"] = j.get("same_top1_pct")
    print(name, keys)
PY
}
