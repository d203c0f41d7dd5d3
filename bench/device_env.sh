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
