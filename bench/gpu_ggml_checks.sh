#!/usr/bin/env bash
# llama.cpp's numerics on the GPU against the CPU (issue 21), llama-8m, same binary: eval of
# the Q4_K_M file against the base, verify (its default numerics), and a sweep of two types
# with --ggml-numerics. Run on the GPU machine from the repository root after the bundle is
# unpacked to /tmp/ql (see bench/gpu_checks.sh for the layout of build-carry/).
set -u
B=$PWD/build-carry
Q=/tmp/ql/bin/quantlens
M=examples/models/llama-8m
D=${D:-$B/data}
echo "== eval Q4_K_M vs base, --ggml-numerics: CPU vs GPU"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  /usr/bin/time -f "$dev eval %e s" $Q -q eval $D/llama-8m-Q4_K_M.gguf --text $D/eval.txt --chunks 20 --base $M --as-f16 --ggml-numerics $flag --json > /tmp/g-$dev.json 2>/tmp/g-$dev.err; tail -2 /tmp/g-$dev.err
done
python3 -c "
import json; c=json.load(open('/tmp/g-cpu.json')); g=json.load(open('/tmp/g-gpu.json'))
print('ggml eval: ppl cpu', c['ppl'], 'gpu', g['ppl'], 'rel', g['ppl']/c['ppl']-1, '; KLD cpu', c['kld']['mean'], 'gpu', g['kld']['mean'], 'rel', g['kld']['mean']/c['kld']['mean']-1, '; p99', c['kld'].get('p99'), g['kld'].get('p99'))"
echo "== verify (default numerics): CPU vs GPU"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  /usr/bin/time -f "$dev verify %e s" $Q -q verify $D/llama-8m-Q4_K_M.gguf --base $M --text $D/eval.txt --chunks 20 $flag --out-dir /tmp/gv-$dev --json /tmp/gv-$dev.json > /tmp/gv-$dev.log 2>&1 || tail -5 /tmp/gv-$dev.log
done
python3 -c "
import json; c=json.load(open('/tmp/gv-cpu.json')); g=json.load(open('/tmp/gv-gpu.json'))
print(json.dumps(c)[:700]); print(json.dumps(g)[:700])"
echo "== sweep --ggml-numerics, Q4_K and Q8_0: CPU vs GPU"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  /usr/bin/time -f "$dev sweep %e s" $Q -q sweep $M --eval $D/calib.txt --tokens 2048 --types Q4_K,Q8_0 --ggml-numerics $flag --store /tmp/gs-$dev.sqlite --json /tmp/gs-$dev.json > /tmp/gs-$dev.log 2>&1 || tail -5 /tmp/gs-$dev.log
  tail -1 /tmp/gs-$dev.log
done
python3 bench/compare_sweeps.py /tmp/gs-cpu.json /tmp/gs-gpu.json
echo "== compare FP vs Q4_K_M (llama.cpp's numerics, attribution on): CPU vs GPU"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  /usr/bin/time -f "$dev compare %e s" $Q -q compare $M $D/llama-8m-Q4_K_M.gguf --text $D/eval.txt --chunks 10 $flag --store /tmp/gc-$dev.sqlite --json > /tmp/gc-$dev.json 2>/tmp/gc-$dev.err || tail -5 /tmp/gc-$dev.err
  tail -1 /tmp/gc-$dev.err
done
python3 - <<'PY'
import json
c, g = json.load(open("/tmp/gc-cpu.json")), json.load(open("/tmp/gc-gpu.json"))
def flat(d, p=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items(): out.update(flat(v, p + "." + k))
    elif isinstance(d, list):
        for i, v in enumerate(d): out.update(flat(v, p + f"[{i}]"))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[p] = d
    return out
fc, fg = flat(c), flat(g)
worst = sorted(((abs(fg[k] / fc[k] - 1) if fc[k] else abs(fg[k]), k) for k in fc if k in fg), reverse=True)
print("compare: ", len(fc), "numbers; worst relative differences:")
for r, k in worst[:8]: print(f"  {k}: cpu {fc[k]} gpu {fg[k]} rel {r:.3e}")
print("kld_mean cpu", fc.get(".model.kld_mean"), "gpu", fg.get(".model.kld_mean"))
PY
