#!/usr/bin/env python3
"""Compares two legacy .dat imatrix files (CPU vs GPU calibrate): every entry present in both,
equal call counts, and the largest relative difference of a value (values above 1e-6).
Usage: compare_imatrix.py CPU.dat GPU.dat"""
import struct
import sys
def load(p):
    b = open(p, "rb").read(); o = 0
    n, = struct.unpack_from("<i", b, o); o += 4
    d = {}
    for _ in range(n):
        L, = struct.unpack_from("<i", b, o); o += 4
        name = b[o:o+L].decode(); o += L
        ncall, nval = struct.unpack_from("<ii", b, o); o += 8
        d[name] = (ncall, struct.unpack_from(f"<{nval}f", b, o)); o += 4 * nval
    return d
c, g = load(sys.argv[1]), load(sys.argv[2])
worst = 0; wn = None
for k in c:
    if k not in g: print("missing on GPU", k); continue
    a, b = c[k][1], g[k][1]
    assert c[k][0] == g[k][0], (k, c[k][0], g[k][0])
    r = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b) if abs(x) > 1e-6)
    if r > worst: worst, wn = r, k
print(f"imatrix: {len(c)} entries, counts equal, max rel diff {worst:.3e} ({wn})")
