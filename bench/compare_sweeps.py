# compare_sweeps.py CPU.json GPU.json: per (unit, type) the GPU sweep's metrics against the CPU's.
import json, sys
def load(p):
    d = {}
    for m in json.load(open(p))["measurements"]:
        d[(m["unit"], m["type"], m["metric"])] = m["value"]
    return d
c, g = load(sys.argv[1]), load(sys.argv[2])
for metric in ["kld_mean", "kld_p99", "kld_p999", "w_rmse", "w_imat_rel", "w_imat_err", "bytes"]:
    keys = [k for k in c if k[2] == metric and k in g]
    if not keys:
        print(f"{metric}: no common items"); continue
    big = [k for k in keys if abs(c[k]) > (1e-4 if metric.startswith("kld") else 0)]
    rel = [abs(g[k] / c[k] - 1) for k in big] if big else [0]
    worst = max(big, key=lambda k: abs(g[k] / c[k] - 1)) if big else None
    print(f"{metric}: {len(keys)} items, {len(big)} compared, max rel diff {max(rel):.4%}, "
          f"median {sorted(rel)[len(rel)//2]:.4%}; worst {worst} cpu {c.get(worst)} gpu {g.get(worst)}")
missing = [k for k in c if k not in g]
print("missing on GPU:", len(missing), missing[:5])
