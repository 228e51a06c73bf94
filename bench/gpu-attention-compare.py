# Paged attention on the GPU, Llama-3-8B shapes (32 q heads, 8 KV heads, head_dim 128, bf16, 16-token
# blocks scattered randomly through a large cache): our Triton kernel (through attention.Attention) against
# PyTorch's FlexAttention (torch.compile'd) over the same paged cache, for decode batches, prefills and a
# mixed batch. Every implementation is first checked against a float64 reference (relative error, output
# poisoned with NaN first); then each is timed with CUDA events around single calls (a GPU sleep is queued
# first so host launch work stays out of the number), cycling input sets so small cases do not run from L2.
#
# FlexAttention over a paged cache: torch.nn.attention.experimental._paged_attention.PagedAttention (torch
# 2.11). Its page table and physical->logical map are filled from our block tables; a logical causal block
# mask (16-token KV blocks = one page) is converted to physical page indices, and its mask_mod looks the
# page table up backwards. The KV cache is our own [blocks, 16, kv_heads, D] tensor viewed as
# [1, kv_heads, blocks*16, D] (no copy). A q tile of the flex kernel then walks 16-key tiles. A mixed batch
# is one flex call for its prefills plus one for its decodes (flex needs one query length per call).
# "flex-gather" instead copies each sequence's pages into a dense [B, kv_heads, L, D] tensor first and runs
# flex with 128-key tiles; its time includes the copy.
#
#   python3 bench/gpu-attention-compare.py [--sweep] [--flex-gather] [--json-out F]
# --before FILE: also time another copy of kernels/paged_attention.py (the pre-tuning version).
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_file  # noqa: E402
from lmi_executor.attention import Attention, AttentionMetadata, reference_attention  # noqa: E402
from lmi_executor.kernels import attention_launch  # noqa: E402
from lmi_executor.kernels import paged_attention as pa_mod  # noqa: E402

H, KVH, D, PAGE = 32, 8, 128, 16
DT = torch.bfloat16
SCALE = D ** -0.5
DEV = torch.device("cuda")
NUM_BLOCKS = 40960  # 655,360 token slots: 1.34 GB each for K and V
KV_TOKEN_BYTES = 2 * KVH * D * 2  # K and V, bf16

CASES = [
    ("decode b1 c512", [1], [512]),
    ("decode b1 c2048", [1], [2048]),
    ("decode b32 c512", [1] * 32, [512] * 32),
    ("decode b32 c2048", [1] * 32, [2048] * 32),
    ("decode b256 c512", [1] * 256, [512] * 256),
    ("decode b256 c2048", [1] * 256, [2048] * 256),
    ("prefill 16x512", [512] * 16, [512] * 16),
    ("prefill 1x4096", [4096], [4096]),
    ("mixed 8x512 + 200 decodes c512", [512] * 8 + [1] * 200, [512] * 8 + [512] * 200),
]

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def kv_bytes(ctx_lens):
    return sum(ctx_lens) * KV_TOKEN_BYTES


def attn_flops(q_lens, ctx_lens):
    """QK^T and PV over the allowed (query, key) pairs: 4 * H * D per pair."""
    pairs = 0
    for n, c in zip(q_lens, ctx_lens):
        # query r (0..n-1) sees keys 0..c-n+r
        pairs += n * (c - n + 1) + n * (n - 1) // 2
    return 4 * H * D * pairs


def make_sets(q_lens, ctx_lens, nsets, gen, perm):
    """nsets input sets over disjoint random pages of the shared cache."""
    sets = []
    nbs = [(c + PAGE - 1) // PAGE for c in ctx_lens]
    need = sum(nbs)
    for r in range(nsets):
        pages = perm[r * need:(r + 1) * need]
        table = torch.zeros((len(q_lens), max(nbs)), dtype=torch.int32)
        o = 0
        for i, nb in enumerate(nbs):
            table[i, :nb] = pages[o:o + nb]
            o += nb
        qsl = [0]
        for n in q_lens:
            qsl.append(qsl[-1] + n)
        q = torch.randn((qsl[-1], H, D), generator=gen, device=DEV).to(DT)
        meta = AttentionMetadata(
            slot_mapping=torch.zeros(0, dtype=torch.long, device=DEV),
            query_start_loc=torch.tensor(qsl, dtype=torch.int32, device=DEV),
            seq_lens=torch.tensor(ctx_lens, dtype=torch.int32, device=DEV),
            block_tables=table.to(DEV), max_query_len=max(q_lens), max_seq_len=max(ctx_lens),
            query_start_loc_cpu=qsl, seq_lens_cpu=list(ctx_lens),
        )
        sets.append((q, meta, table))
    return sets


def time_calls(fns, runs=3, calls=30):
    """Median GPU time of one call, per run: events around each call, a GPU sleep queued in front so the
    host's launch work overlaps it, input sets cycled."""
    for f in fns:
        f()
    torch.cuda.synchronize()
    meds = []
    for _ in range(runs):
        ts = []
        for i in range(calls):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda._sleep(1_500_000)  # ~0.8 ms of GPU time
            a.record()
            fns[i % len(fns)]()
            b.record()
            ts.append((a, b))
        torch.cuda.synchronize()
        xs = sorted(a.elapsed_time(b) for a, b in ts)
        meds.append(xs[len(xs) // 2])
    return sorted(meds)[len(meds) // 2], min(meds), max(meds)


def rel_err(got, ref):
    return ((got.double() - ref).norm() / ref.norm()).item()


def poisoned(fn, shape):
    """Fill a same-sized block of the caching allocator with NaN and free it, so the output most likely
    lands on NaNs: an element the implementation does not write shows up as NaN."""
    junk = torch.full(shape, float("nan"), dtype=DT, device=DEV)
    del junk
    return fn()


# ---------------------------------------------------------------- FlexAttention over the paged cache
class Flex:
    def __init__(self, kc, vc):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        import torch._dynamo

        for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 256)
        self.create_block_mask = create_block_mask
        self.flex = torch.compile(flex_attention, dynamic=False)
        self.k4 = kc.view(1, NUM_BLOCKS * PAGE, KVH, D).transpose(1, 2)  # [1, KVH, slots, D], no copy
        self.v4 = vc.view(1, NUM_BLOCKS * PAGE, KVH, D).transpose(1, 2)
        self.kc, self.vc = kc, vc

    def group_calls(self, sets, rows_sel, q_len, ctx_lens, paged=True):
        """One flex call per input set over the sequences rows_sel (all with query length q_len). Returns
        (calls, outputs-to-[T,H,D] mapper, mask build ms)."""
        from torch.nn.attention.experimental._paged_attention import PagedAttention

        B = len(rows_sel)
        ctx = [ctx_lens[i] for i in rows_sel]
        nb_max = max((c + PAGE - 1) // PAGE for c in ctx)
        q_off = torch.tensor([c - q_len for c in ctx], dtype=torch.int64, device=DEV)

        def logical_mask(b, h, q_idx, kv_idx):  # query row q_idx of sequence b sits at position q_off[b] + q_idx
            return kv_idx <= q_idx + q_off[b]

        torch.cuda.synchronize()
        t = time.time()
        calls = []
        sel = torch.tensor(rows_sel, dtype=torch.int64)
        if paged:
            pg = PagedAttention(NUM_BLOCKS, PAGE, B, device="cuda")
            nbs = torch.tensor([(c + PAGE - 1) // PAGE for c in ctx], device=DEV)
            cols = torch.arange(nb_max, device=DEV)[None, :].expand(B, nb_max)
            rows = torch.arange(B, device=DEV)[:, None].expand(B, nb_max)
            valid = cols < nbs[:, None]
            for _, _, table in sets:  # the sets use disjoint pages, so one physical->logical map serves all
                tb = table[sel, :nb_max].long().to(DEV)
                pg.physical_to_logical[rows[valid], tb[valid]] = cols[valid]
            # (torch 2.11's PagedAttention keeps no sequence lengths; logical_mask bounds keys by the context)
            shared_mask = pg.get_mask_mod(logical_mask)
            lbm = self.create_block_mask(logical_mask, B, None, q_len, nb_max * PAGE, device="cuda",
                                         BLOCK_SIZE=(128, PAGE))
            for q, meta, table in sets:
                tb = table[sel, :nb_max].long().to(DEV)
                pg.page_table[:B, :nb_max] = torch.where(valid, tb, -1)  # this set's page table
                bm = pg.convert_logical_block_mask(lbm)
                bm.mask_mod = shared_mask
                q4 = self._q4(q, meta, rows_sel, q_len)
                opts = {"BLOCK_N": PAGE} if q_len >= 128 else {}
                calls.append(lambda q4=q4, bm=bm, opts=opts: self.flex(
                    q4, self.k4, self.v4, block_mask=bm, scale=SCALE, enable_gqa=True, kernel_options=opts))
        else:
            L = nb_max * PAGE
            bm = self.create_block_mask(logical_mask, B, None, q_len, L, device="cuda")
            for q, meta, table in sets:
                idx = table[sel, :nb_max].long().to(DEV)
                q4 = self._q4(q, meta, rows_sel, q_len)

                def call(q4=q4, idx=idx):
                    kg = self.kc[idx].view(B, L, KVH, D).transpose(1, 2)
                    vg = self.vc[idx].view(B, L, KVH, D).transpose(1, 2)
                    return self.flex(q4, kg, vg, block_mask=bm, scale=SCALE, enable_gqa=True)

                calls.append(call)
        torch.cuda.synchronize()
        return calls, (time.time() - t) * 1000

    @staticmethod
    def _q4(q, meta, rows_sel, q_len):
        qsl = meta.query_start_loc_cpu
        parts = [q[qsl[i]:qsl[i + 1]] for i in rows_sel]
        qq = torch.stack(parts) if len(parts) > 1 else parts[0][None]  # [B, q_len, H, D]
        return qq.transpose(1, 2)  # [B, H, q_len, D]


def flex_impl(fx, sets, q_lens, ctx_lens, paged):
    """Calls producing our [T, H, D] layout; groups the batch by query length (a mixed batch -> 2 calls)."""
    groups = {}
    for i, n in enumerate(q_lens):
        groups.setdefault(n, []).append(i)
    per_group = []
    build_ms = 0.0
    for n, rows in groups.items():
        calls, ms = fx.group_calls(sets, rows, n, ctx_lens, paged)
        per_group.append((rows, n, calls))
        build_ms += ms
    qsl = sets[0][1].query_start_loc_cpu

    def make(r):
        def run():
            outs = [(rows, n, calls[r]()) for rows, n, calls in per_group]
            return outs
        return run

    def to_thd(outs):
        T = qsl[-1]
        out = torch.empty((T, H, D), dtype=DT, device=DEV)
        for rows, n, o in outs:
            o = o.transpose(1, 2)  # [B, n, H, D]
            for j, i in enumerate(rows):
                out[qsl[i]:qsl[i + 1]] = o[j]
        return out

    return [make(r) for r in range(len(sets))], to_thd, build_ms


def load_before(path):
    return load_file(path, "paged_attention_before")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json-out", default="")
    ap.add_argument("--before", default="")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--flex-gather", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="decode launch parameters at batch 256")
    ap.add_argument("--sweep-tail", action="store_true", help="tile width / stages at contexts ending mid-tile")
    ap.add_argument("--sweep-small", action="store_true", help="split counts for small and middle batches")
    ap.add_argument("--flex-gather-cases", default="b32 c2048,b256 c512,16x512,1x4096,mixed")
    ap.add_argument("--sweep-budget-s", type=float, default=100.0)
    ap.add_argument("--cases", default="")
    ap.add_argument("--deadline-s", type=float, default=1e9, help="stop the sweep this long after start")
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    log(f"device {props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}")
    import triton

    log(f"triton {triton.__version__}")
    res = {"device": props.name, "torch": torch.__version__, "triton": triton.__version__, "cases": [], "sweep": []}

    def save():
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(res, f, indent=1)

    # Copy ceiling: 1 GiB device-to-device, bytes read + written.
    x = torch.empty(1 << 29, dtype=torch.int16, device=DEV)
    y = torch.empty_like(x)
    med, _, _ = time_calls([lambda: y.copy_(x)], runs=3, calls=10)
    res["copyTBs"] = 2 * x.numel() * 2 / med / 1e9
    log(f"device copy: {res['copyTBs']:.2f} TB/s (read+write)")
    del x, y

    gen = torch.Generator(device="cuda").manual_seed(0)
    kc = torch.randn((NUM_BLOCKS, PAGE, KVH, D), generator=gen, device=DEV).to(DT)
    vc = torch.randn((NUM_BLOCKS, PAGE, KVH, D), generator=gen, device=DEV).to(DT)
    perm = torch.randperm(NUM_BLOCKS, generator=torch.Generator().manual_seed(1)).to(torch.int32)
    attn = Attention("triton", DEV)
    before = load_before(args.before) if args.before else None
    fx = None if args.no_flex else Flex(kc, vc)
    cases = [c for c in CASES if not args.cases or any(s in c[0] for s in args.cases.split(","))]

    for name, q_lens, ctx_lens in cases:
        nbytes = kv_bytes(ctx_lens)
        decode = max(q_lens) == 1
        nsets = max(1, min(64, (256 << 20) // nbytes)) if decode else 1
        nsets = min(nsets, NUM_BLOCKS // sum((c + PAGE - 1) // PAGE for c in ctx_lens))
        sets = make_sets(q_lens, ctx_lens, nsets, gen, perm)
        q0, meta0, _ = sets[0]
        # float64 reference over the pages this case touches only (a float64 copy of the whole cache is 11 GB)
        used = torch.unique(meta0.block_tables.long().flatten())
        remap = torch.zeros(NUM_BLOCKS, dtype=torch.int32, device=DEV)
        remap[used] = torch.arange(used.numel(), dtype=torch.int32, device=DEV)
        meta_small = AttentionMetadata(**{**meta0.__dict__, "block_tables": remap[meta0.block_tables.long()]})
        ref = reference_attention(q0.double(), kc[used].double(), vc[used].double(), meta_small, SCALE)
        row = {"case": name, "kvBytes": nbytes, "flops": attn_flops(q_lens, ctx_lens), "sets": nsets, "impl": {}}
        T = q0.shape[0]

        impls = {"triton": ([lambda q=q, m=m: attn.forward(q, kc, vc, m, SCALE) for q, m, _ in sets], None, 0.0)}
        if before is not None:
            impls["triton-before"] = ([lambda q=q, m=m: before.paged_attention(q, kc, vc, m, SCALE) for q, m, _ in sets], None, 0.0)
        if fx is not None:
            try:
                fns, conv, ms = flex_impl(fx, sets, q_lens, ctx_lens, paged=True)
                impls["flex-paged"] = (fns, conv, ms)
            except Exception as e:  # noqa: BLE001
                row["impl"]["flex-paged"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                log(name, "flex-paged setup failed:", row["impl"]["flex-paged"]["error"])
            if args.flex_gather and any(x in name for x in args.flex_gather_cases.split(",")):
                try:
                    fns, conv, ms = flex_impl(fx, sets, q_lens, ctx_lens, paged=False)
                    impls["flex-gather"] = (fns, conv, ms)
                except Exception as e:  # noqa: BLE001
                    row["impl"]["flex-gather"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        for iname, (fns, conv, build_ms) in impls.items():
            try:
                t = time.time()
                got = poisoned(fns[0], (T, H, D))
                if conv is not None:
                    got = conv(got)
                torch.cuda.synchronize()
                first_s = time.time() - t
                nan = bool(torch.isnan(got).any())
                err = rel_err(got, ref)
                med, lo, hi = time_calls(fns)
                row["impl"][iname] = {"relErr": err, "nan": nan, "ms": med, "msMin": lo, "msMax": hi,
                                      "TBs": nbytes / med / 1e9, "TFLOPs": row["flops"] / med / 1e9,
                                      "maskBuildMs": build_ms, "firstCallS": first_s}
                log(f"{name:32s} {iname:14s} err {err:.2e} nan={nan} {med:.4f} ms [{lo:.4f}-{hi:.4f}] "
                    f"{nbytes / med / 1e9:.2f} TB/s {row['flops'] / med / 1e9:.1f} TFLOP/s (first call {first_s:.1f}s)")
            except Exception as e:  # noqa: BLE001
                row["impl"][iname] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                log(name, iname, "failed:", row["impl"][iname]["error"])
        res["cases"].append(row)
        save()
        del sets, impls, ref
        torch.cuda.empty_cache()

    if args.sweep_tail:
        budget = min(args.sweep_budget_s, args.deadline_s - (time.time() - T0) - 20)
        sweep_tail(res, kc, vc, gen, perm, budget, save)
    if args.sweep_small:
        budget = min(args.sweep_budget_s, args.deadline_s - (time.time() - T0) - 20)
        sweep_small(res, kc, vc, gen, perm, budget, save)
    if args.sweep:
        budget = min(args.sweep_budget_s, args.deadline_s - (time.time() - T0) - 75)
        sweep_large(res, kc, vc, gen, perm, budget, save)

    print("\n| case | impl | rel err | ms (median of 3 runs) | KV TB/s | TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for row in res["cases"]:
        for iname, r in row["impl"].items():
            if "error" in r:
                print(f"| {row['case']} | {iname} | error: {r['error'][:80]} | | | |")
            else:
                print(f"| {row['case']} | {iname} | {r['relErr']:.1e} | {r['ms']:.4f} | {r['TBs']:.2f} | {r['TFLOPs']:.1f} |")
    print(f"device copy {res['copyTBs']:.2f} TB/s; total {time.time() - T0:.0f} s")


def sweep_large(res, kc, vc, gen, perm, budget_s, save):
    """Decode launch parameters at batch 256 (context 512, then the best at 2048 / 520 / batch 128)."""
    t_end = time.time() + budget_s
    base = {"block_n": 64, "num_warps": 4, "num_stages": 2, "head_fast": False, "splits": 1}
    grid = []
    for hf in (False, True):
        for bn in (64, 128):
            for nw in (4, 8):
                for ns in (2, 3):
                    for sp in (1, 2):
                        grid.append({"block_n": bn, "num_warps": nw, "num_stages": ns, "head_fast": hf, "splits": sp})
    grid += [dict(base, block_n=32), dict(base, num_stages=1), dict(base, num_stages=4), dict(base, block_n=256, num_warps=8),
             dict(base, num_warps=2), dict(base, splits=4)]
    sets512 = make_sets([1] * 256, [512] * 256, 1, gen, perm)
    q, meta, _ = sets512[0]
    ref = pa_mod.paged_attention(q, kc, vc, meta, SCALE, launch=base).double()
    nbytes = kv_bytes([512] * 256)
    scored = []
    for cfg in grid:
        if time.time() > t_end:
            log("sweep budget spent")
            break
        try:
            got = pa_mod.paged_attention(q, kc, vc, meta, SCALE, launch=cfg)
            err = rel_err(got, ref)
            med, lo, hi = time_calls([lambda: pa_mod.paged_attention(q, kc, vc, meta, SCALE, launch=cfg)], runs=3, calls=20)
            scored.append((med, cfg))
            res["sweep"].append({"case": "decode b256 c512", "cfg": cfg, "ms": med, "msMin": lo, "msMax": hi,
                                 "TBs": nbytes / med / 1e9, "errVsBase": err})
            log(f"sweep b256 c512 {cfg} {med:.4f} ms {nbytes / med / 1e9:.2f} TB/s err-vs-base {err:.1e}")
        except Exception as e:  # noqa: BLE001
            log("sweep", cfg, "failed:", type(e).__name__, str(e)[:200])
        save()
    scored.sort(key=lambda x: x[0])
    top = [c for _, c in scored[:5]]
    if base not in top:
        top.append(base)
    for bname, q_lens, ctx_lens in (
        ("decode b256 c2048", [1] * 256, [2048] * 256),
        ("decode b256 c520", [1] * 256, [520] * 256),
        ("decode b128 c512", [1] * 128, [512] * 128),
    ):
        sweep_cfgs(res, kc, vc, gen, perm, bname, q_lens, ctx_lens, top, t_end + 60)
        save()


def sweep_cfgs(res, kc, vc, gen, perm, bname, q_lens, ctx_lens, cfgs, t_end):
    sets = make_sets(q_lens, ctx_lens, max(1, min(64, (256 << 20) // kv_bytes(ctx_lens))), gen, perm)
    nb = kv_bytes(ctx_lens)
    for c in cfgs:
        if time.time() > t_end:
            log("sweep budget spent")
            return
        try:
            med, lo, hi = time_calls([lambda q=q, m=m: pa_mod.paged_attention(q, kc, vc, m, SCALE, launch=c)
                                      for q, m, _ in sets], runs=3, calls=20)
            res["sweep"].append({"case": bname, "cfg": c, "ms": med, "msMin": lo, "msMax": hi, "TBs": nb / med / 1e9})
            log(f"sweep {bname} {c} {med:.4f} ms [{lo:.4f}-{hi:.4f}] {nb / med / 1e9:.2f} TB/s")
        except Exception as e:  # noqa: BLE001
            log("sweep", bname, c, "failed:", type(e).__name__, str(e)[:200])


def sweep_tail(res, kc, vc, gen, perm, budget_s, save):
    """Tile width (pages per iteration) and pipeline depth where contexts end mid-tile, as in the serving
    profile (context ~520), and for ragged contexts."""
    t_end = time.time() + budget_s
    old = {"block_n": 64, "num_warps": 4, "num_stages": 2, "head_fast": False, "splits": 1}
    cfgs = [old] + [{"block_n": bn, "num_warps": 4, "num_stages": ns, "head_fast": True, "splits": 1}
                    for bn in (32, 64) for ns in (3, 4)] + [{"block_n": 32, "num_warps": 2, "num_stages": 3, "head_fast": True, "splits": 1}]
    import random

    rnd = random.Random(7)
    ragged = [rnd.randrange(256, 1024) for _ in range(256)]
    for bname, B, ctx in (("decode b256 c520", 256, [520] * 256), ("decode b256 c512", 256, [512] * 256),
                          ("decode b256 c2048", 256, [2048] * 256), ("decode b256 ragged 256-1023", 256, ragged),
                          ("decode b128 c520", 128, [520] * 128), ("decode b64 c1000", 64, [1000] * 64),
                          ("decode b32 c520", 32, [520] * 32)):
        sweep_cfgs(res, kc, vc, gen, perm, bname, [1] * B, ctx, cfgs, t_end)
        save()


def sweep_small(res, kc, vc, gen, perm, budget_s, save):
    """Split counts and pipeline depth for small and middle decode batches (where splits or waves matter)."""
    t_end = time.time() + budget_s
    old = {"block_n": 64, "num_warps": 4, "num_stages": 2, "head_fast": False}
    new = {"block_n": 64, "num_warps": 4, "num_stages": 3, "head_fast": True}
    for B, ctx in ((1, 512), (1, 2048), (8, 2048), (32, 512), (32, 2048), (64, 512), (64, 2048), (128, 512)):
        s0 = attention_launch.decode_splits(B, KVH)
        cfgs = []
        for sp in sorted({max(1, s0 // 2), s0, s0 * 2, s0 * 4}):
            for base in (old, new):
                cfgs.append(dict(base, splits=sp))
        if B == 1:
            cfgs += [dict(old, splits=16, block_n=32), dict(old, splits=32, block_n=32), dict(new, splits=32, block_n=32)]
        sweep_cfgs(res, kc, vc, gen, perm, f"decode b{B} c{ctx}", [1] * B, [ctx] * B, cfgs, t_end)
        save()


if __name__ == "__main__":
    main()
