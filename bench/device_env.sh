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
