# Does a decode-attention launch that draws less power leave the decode step's GEMMs more clock? (The burst's decode
# steps run at the H100's power limit.) For each attention launch variant (kernels/paged_attention.py's `launch`
# override) at batch 256 x 640 keys (Llama-3-8B attention shape, bf16 cache): the attention alone ("attn_", 4 calls
# over disjoint inputs) and a stand-in decode step ("step_", 4 layers of qkv, attention, o, gate_up and down GEMMs at
# 256 rows through quant.linear), each replayed alone for 0.6 s at a time in 3 rounds with the order rotating
# (gpu-gemm-sustained.py's `sustained`): ms per graph, SM MHz and W (medians). NVML's power reading lags and can hold
# some of the previous candidate's; the times are the result. Kept as it ran (docs/benchmarks.md, seventeenth session).
#   python3 bench/gpu-decode-attention-power.py   (from the repository root)
import importlib.util, sys, statistics, torch
sys.path.insert(0, "python"); sys.path.insert(0, "bench")
from bench_scripts import load_script
from lmi_executor.kernels import paged_attention as pa
from lmi_executor.quant import linear
_spec = importlib.util.spec_from_file_location("sus", "bench/gpu-gemm-sustained.py"); sus = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(sus)
sw = load_script("gpu-attention-fp8-sweep.py")
dev = "cuda"; SCALE = 128 ** -0.5
B, ctx = 256, 640
sets = []
for seed in range(4):
    q, k, v, table = sw.inputs(B, ctx, 1, torch.bfloat16, seed=seed)
    sets.append((q, k, v, sw.metadata(B, ctx, 1, table)))
kv_bytes = 2 * B * ctx * 8 * 128 * 2
cands = {}
CFGS = [("w4n64s3", None), ("w2n64s3", {"num_warps": 2}), ("w2n64s4", {"num_warps": 2, "num_stages": 4}),
        ("w1n64s3", {"num_warps": 1}), ("w2n32s4", {"num_warps": 2, "block_n": 32, "num_stages": 4}),
        ("w1n32s5", {"num_warps": 1, "block_n": 32, "num_stages": 5}), ("w2n128s2", {"num_warps": 2, "block_n": 128, "num_stages": 2})]
x = torch.randn(256, 4096, device=dev, dtype=torch.bfloat16)
xi = torch.randn(256, 14336, device=dev, dtype=torch.bfloat16)
layers = []
for i in range(4):
    layers.append({n: torch.randn(s, device=dev, dtype=torch.bfloat16) * 0.02 for n, s in
                   [("qkv", (6144, 4096)), ("o", (4096, 4096)), ("gu", (28672, 4096)), ("down", (4096, 14336))]})
for name, launch in CFGS:
    cands["attn_" + name] = ([lambda s=s, launch=launch: pa.paged_attention(s[0], s[1], s[2], s[3], SCALE, launch=launch) for s in sets], kv_bytes * 4)
    step = []
    for L, st in zip(layers, sets):
        step += [lambda L=L: linear(x, L["qkv"]), lambda st=st, launch=launch: pa.paged_attention(st[0], st[1], st[2], st[3], SCALE, launch=launch),
                 lambda L=L: linear(x, L["o"]), lambda L=L: linear(x, L["gu"]), lambda L=L: linear(xi, L["down"])]
    cands["step_" + name] = (step, 1)
res = {n: [] for n in cands}
names = list(cands)
for r in range(3):
    for n in names[r:] + names[:r]:
        fns, nbytes = cands[n]
        res[n].append(sus.sustained(fns, 0.6))
for n in names:
    ms = statistics.median(p[0] for p in res[n]) * len(cands[n][0])
    print(f"{n:14s} {ms:.4f} ms per graph (rounds {[round(p[0] * len(cands[n][0]), 4) for p in res[n]]}), {cands[n][1] / ms / 1e9:.2f} TB/s, {statistics.median(p[1] for p in res[n]):.0f} MHz, {statistics.median(p[2] for p in res[n]):.0f} W")
