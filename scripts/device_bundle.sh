#!/usr/bin/env bash
# Packs built binaries with the shared libraries they need (except glibc, the CUDA driver and
# cuBLAS, which the GPU machine provides) into one xz archive, for the `device` tool's 64 MiB
# carry limit:  scripts/device_bundle.sh OUT.tar.xz BIN...
# On the GPU machine: tar xJf OUT.tar.xz -C DIR; LD_LIBRARY_PATH=DIR/lib:$CUBLAS_DIR DIR/bin/X
set -euo pipefail
out=$1
shift
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
for bin in "$@"; do
    cp "$bin" "$stage/bin/"
    strip "$stage/bin/$(basename "$bin")" 2>/dev/null || true  # symbols: half the carry limit
    ldd "$bin" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*|libcublas*) ;;
            *) cp -n "$lib" "$stage/lib/" ;;
        esac
    done
done
# -9e: the carry limit counts the repository too, which fixtures keep growing.
XZ_OPT=-9e tar cJf "$out" -C "$stage" bin lib
rm -rf "$stage"
ls -la "$out"
