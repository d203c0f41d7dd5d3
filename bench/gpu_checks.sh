# The GPU paths against the CPU path of the same binary, on llama-8m (issue 21): CUDA tests,
# sweep --imatrix, eval, verify and calibrate, each with and without --gpu; then the 8B
# pipeline (bench/gpu_pipeline.sh) started detached with setsid, so it outlives a device call
# (read /tmp/pipe/driver.log later). Run on the GPU machine from the repository root, with
# build-carry/ holding bundle.tar.xz (scripts/device_bundle.sh of the CUDA build), data/
# (calib.txt, eval.txt, llama-8m-Q4_K_M.gguf, llama-8m.llamacpp-imatrix.dat) and
# make_llama3_8b_shape.py.
set -u
. bench/device_env.sh  # B, Q, the bundle unpacked
M=examples/models/llama-8m
D=$B/data
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# The 8B checkpoint in the background while the small checks run.
[ -d /tmp/ckpt ] || (python3 $B/make_llama3_8b_shape.py /tmp/ckpt $M > /tmp/ckpt.log 2>&1; echo "ckpt rc $?" >> /tmp/ckpt.log) &
CK=$!
echo "== tests/cuda"
timeout 240 /tmp/ql/bin/cuda_test_cuda_engine 2>&1 | grep -E "^\[  |OK \]|FAILED|imat|Failure|Expected|Which|actual|differ" | grep -v "   0 of" | tail -40
timeout 240 /tmp/ql/bin/cuda_test_cuda_engine 2>&1 | grep -cE "imat .* 0 of"
echo "== sweep llama-8m with the llama.cpp imatrix: CPU vs GPU (default types, class granularity off)"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  /usr/bin/time -f "$dev sweep %e s" $Q -q sweep $M --eval $D/calib.txt --tokens 4096 --imatrix $D/llama-8m.llamacpp-imatrix.dat $flag --store /tmp/s-$dev.sqlite --json /tmp/s-$dev.json > /tmp/s-$dev.log 2>&1 || tail -5 /tmp/s-$dev.log
  tail -1 /tmp/s-$dev.log
done
python3 bench/compare_sweeps.py /tmp/s-cpu.json /tmp/s-gpu.json
echo "== eval: CPU vs GPU"
$Q -q eval $M --text $D/eval.txt --chunks 20 --json > /tmp/e-cpu.json 2>/tmp/e-cpu.err; tail -2 /tmp/e-cpu.err
$Q -q eval $M --text $D/eval.txt --chunks 20 --gpu --json > /tmp/e-gpu.json 2>/tmp/e-gpu.err; tail -2 /tmp/e-gpu.err
python3 -c "
import json; c=json.load(open('/tmp/e-cpu.json')); g=json.load(open('/tmp/e-gpu.json'))
print('eval ppl cpu', c['ppl'], 'gpu', g['ppl'], 'rel', g['ppl']/c['ppl']-1, 'tok/s', c['tokens_per_second'], g['tokens_per_second'])"
$Q -q eval $D/llama-8m-Q4_K_M.gguf --text $D/eval.txt --chunks 20 --base $M --json > /tmp/q-cpu.json 2>/tmp/q-cpu.err; tail -2 /tmp/q-cpu.err
$Q -q eval $D/llama-8m-Q4_K_M.gguf --text $D/eval.txt --chunks 20 --base $M --gpu --json > /tmp/q-gpu.json 2>/tmp/q-gpu.err; tail -2 /tmp/q-gpu.err
python3 -c "
import json; c=json.load(open('/tmp/q-cpu.json')); g=json.load(open('/tmp/q-gpu.json'))
print('Q4_K_M vs base: ppl cpu', c['ppl'], 'gpu', g['ppl'], '; mean KLD cpu', c['kld']['mean'], 'gpu', g['kld']['mean'], 'rel', g['kld']['mean']/c['kld']['mean']-1)"
echo "== verify --gpu --no-ggml-numerics vs CPU --no-ggml-numerics"
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  $Q -q verify $D/llama-8m-Q4_K_M.gguf --base $M --text $D/eval.txt --chunks 20 --no-ggml-numerics $flag --out-dir /tmp/v-$dev --json /tmp/v-$dev.json > /tmp/v-$dev.log 2>&1 || tail -5 /tmp/v-$dev.log
done
python3 -c "
import json; c=json.load(open('/tmp/v-cpu.json')); g=json.load(open('/tmp/v-gpu.json'))
print(json.dumps(c)[:600]); print(json.dumps(g)[:600])"
echo "== calibrate --gpu vs CPU"
$Q -q calibrate $M --text $D/calib.txt --chunks 20 -o /tmp/c-cpu.dat > /tmp/c-cpu.log 2>&1; head -1 /tmp/c-cpu.log
$Q -q calibrate $M --text $D/calib.txt --chunks 20 --gpu -o /tmp/c-gpu.dat > /tmp/c-gpu.log 2>&1; head -1 /tmp/c-gpu.log; tail -3 /tmp/c-gpu.log
python3 bench/compare_imatrix.py /tmp/c-cpu.dat /tmp/c-gpu.dat
echo "== wait for the checkpoint"
wait $CK; tail -2 /tmp/ckpt.log; du -sh /tmp/ckpt
echo "== 8B pipeline, detached"
rm -rf /tmp/pipe; mkdir -p /tmp/pipe
setsid nohup bash bench/gpu_pipeline.sh $Q /tmp/ckpt $D/calib.txt $D/eval.txt /tmp/pipe > /tmp/pipe/driver.log 2>&1 < /dev/null &
sleep 20; cat /tmp/pipe/driver.log
