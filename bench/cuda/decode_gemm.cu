// A candidate Hopper GEMM for the decode batch (bench/gpu-decode-gemm.py measures it; the executor does not use it):
// y[M, N] = x[M, K] @ w[N, K]^T, bf16 in and out, fp32 accumulation, M = 256 token rows (the largest CUDA-graph
// decode bucket), N a multiple of 256, K a multiple of 64.
//
// The question it asks: at 256 rows a Llama-3-8B projection sits at the machine's balance point (256 FLOP per
// weight byte), where cuBLAS streams the weights at 2.0-2.4 TB/s. A 256 x 128 output tile brings, per 64-wide K
// step, 16 KB of weights and 32 KB of activations into shared memory for 4.2 MFLOP; the activations, re-read from
// L2 by every tile, are two thirds of that traffic. Here the CTAs of a cluster each load a part of the activation
// tile and multicast it to all (TMA .multicast::cluster). The answer so far (docs/benchmarks.md, twenty-second
// session): multicast pays (-12% against no cluster) but the kernel stays behind cuBLASLt's persistent 112 x 128
// tiles with 7 stages, which keep more loads in flight (DRAM 78% of peak against our 64-66%).
//
// Shape of the kernel (the warp-specialized form on sm_90a):
//   - persistent: one CTA an SM (the device's maximum of resident clusters), CLUSTER CTAs a cluster along N, each
//     CTA 128 weight rows of a tile group; 384 threads: warpgroup 0 is the producer (one thread issues the TMA loads
//     into a STAGES-deep ring that runs on across tiles), warpgroups 1 and 2 consume (each one wgmma m64n256k16 per
//     16 of K: 64 weight rows x all 256 tokens, so the weights are the MMA's A operand and the tokens its N side);
//   - full barriers (one a stage: the producer's expect_tx plus the TMA bytes of every CTA's multicast) and empty
//     barriers (one a stage, 2 consumers x CLUSTER CTAs arrive: a stage is refilled only when every CTA is done
//     with it, since the peers' multicasts write into it too);
//   - a stream-K schedule (Schedule below) for the tile groups that do not fill a last wave;
//   - the epilogue rounds the fp32 accumulators to bf16 and stores them straight from registers.
// Invariants: a result depends only on the operands (partials are added in a fixed order, no atomics). Pointers
// 16-byte aligned, rows contiguous (row stride K for x and w, N for y).
// DG_* macros build the variants the bench compares (stages, cluster size, no stream-K, a stage left out).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

constexpr int BM = 256;  // token rows: the whole decode batch, the wgmma's N
constexpr int BN = 128;  // weight rows per CTA: two consumer warpgroups of 64 (the wgmma's M)
constexpr int BK = 64;   // 64 bf16 = 128 bytes: one row of the TMA 128-byte swizzle
#ifndef DG_STAGES
#define DG_STAGES 4
#endif
#ifndef DG_CLUSTER
#define DG_CLUSTER 2
#endif
constexpr int STAGES = DG_STAGES;
constexpr int CLUSTER = DG_CLUSTER;
constexpr int W_STAGE = BN * BK * 2;  // 16 KB
constexpr int X_STAGE = BM * BK * 2;  // 32 KB
constexpr int X_PART = X_STAGE / CLUSTER;
constexpr int EPI_LD = BN + 8;  // epilogue tile row, in elements (272 bytes)
constexpr int SMEM_BYTES = 1024 + STAGES * (W_STAGE + X_STAGE) + 2 * STAGES * 8;
static_assert(BM * EPI_LD * 2 <= STAGES * (W_STAGE + X_STAGE), "the epilogue tile reuses the stages");

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}

__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

// Arrive on the barrier at the same shared-memory offset in CTA `cta` of the cluster (this one included). The
// default .release.cta semantics: what the arrival hands back is shared memory the wgmma (async proxy) has finished
// reading, so no generic writes need ordering. .release.cluster puts a MEMBAR.ALL.GPU before every arrival; with it
// each K step took ~1.15 us (measured), without it the kernel runs 2x faster.
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar, uint32_t cta) {
  asm volatile(
      "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar),
      "r"(cta)
      : "memory");
}

__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar,
                                         uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar), "l"(policy)
      : "memory");
}

// The same box lands at offset `dst` of every CTA in `mask`, each CTA's barrier at `bar` counting its bytes.
__device__ __forceinline__ void tma_load_multicast(uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                                   uint32_t bar, uint16_t mask, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      ".L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5, %6;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar), "h"(mask), "l"(policy)
      : "memory");
}

#ifndef DG_W_EVICT
#define DG_W_EVICT evict_first
#endif
#define DG_STR2(x) #x
#define DG_STR(x) DG_STR2(x)
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::" DG_STR(DG_W_EVICT) ".b64 %0, 1.0;" : "=l"(p));
  return p;
}

__device__ __forceinline__ uint64_t evict_last_policy() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
  return p;
}

// Shared-memory matrix descriptor of a K-major tile in the 128-byte swizzle: 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (1ull << 16) | (static_cast<uint64_t>(1024 >> 4) << 32) |
         (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Keeps the compiler from touching accumulator registers between an MMA's issue and its wait.
__device__ __forceinline__ void fence_acc(float* d) {
#pragma unroll
  for (int j = 0; j < 128; ++j) asm volatile("" : "+f"(d[j])::"memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// d[64 x 256] (+)= A[64 x 16] * B[256 x 16]^T, both K-major in shared memory.
__device__ __forceinline__ void wgmma_m64n256k16(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
      "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "
      "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, "
      "%65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, "
      "%86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, "
      "%106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, "
      "%124, %125, %126, %127}, "
      "%128, %129, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]),
        "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),
        "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]),
        "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]),
        "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// The work of one launch: P tile groups (CLUSTER adjacent 128-row tiles, one per CTA of a cluster, sharing the
// activation tile) of KS k-steps each, over C persistent clusters. The first (P / C) * C groups go whole, group p to
// cluster p % C; the rest ("the tail", U = (P mod C) * KS units of one group's k-step) is cut into C contiguous
// ranges of U / C units (stream-K), so no cluster idles through a second, partial wave. A range that starts inside
// a group contributes that group's later k-steps as an fp32 partial (the workspace slot of its cluster and rank,
// then a flag); the cluster whose range holds the group's k-step 0 (its owner, which reaches that group last in
// its own range) waits for the partials, adds them in cluster order and writes the output: a fixed order, so a
// result never depends on timing. Every cluster of the grid is resident at once (the grid is the device's
// maximum of active clusters), so an owner's wait always ends.
struct Schedule {
  int groups, ks, clusters, whole, tail_units;
  __device__ int range_begin(int c) const { return static_cast<int>((static_cast<long long>(c) * tail_units) / clusters); }
};

struct Segment {
  int group, k0, k1;
  bool owner;
};

// Calls fn(segment) for each segment of cluster c, in order.
template <typename Fn>
__device__ __forceinline__ void for_each_segment(const Schedule& sc, int c, Fn&& fn) {
  for (int g = c; g < sc.whole; g += sc.clusters) fn(Segment{g, 0, sc.ks, true});
  const int u_end = sc.range_begin(c + 1);
  for (int u = sc.range_begin(c); u < u_end;) {
    const int k0 = u % sc.ks;
    const int k1 = min(sc.ks, k0 + (u_end - u));
    fn(Segment{sc.whole + u / sc.ks, k0, k1, k0 == 0});
    u += k1 - k0;
  }
}

__global__ void __cluster_dims__(CLUSTER, 1, 1) __launch_bounds__(384, 1)
    decode_gemm_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                       __nv_bfloat16* __restrict__ y, int n_total, int k_total, float* __restrict__ partials,
                       int* __restrict__ flags) {
  extern __shared__ uint8_t smem_raw[];
  // The same offset in every CTA of the cluster (same kernel, same layout): multicast relies on it.
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  const uint32_t w_smem = base;
  const uint32_t x_smem = base + STAGES * W_STAGE;
  const uint32_t bars = x_smem + STAGES * X_STAGE;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (STAGES + s); };

  const int wg = threadIdx.x / 128;
  const int tid = threadIdx.x % 128;
  const uint32_t rank = cluster_rank();
  const int cluster = blockIdx.x / CLUSTER;
  Schedule sc;
  sc.groups = n_total / (BN * CLUSTER);
  sc.ks = k_total / BK;
  sc.clusters = gridDim.x / CLUSTER;
#ifdef DG_NO_STREAMK
  sc.whole = sc.groups;
#else
  sc.whole = (sc.groups / sc.clusters) * sc.clusters;
#endif
  sc.tail_units = (sc.groups - sc.whole) * sc.ks;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 2 * CLUSTER);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster_sync();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (tid == 0) {
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&w_map)) : "memory");
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&x_map)) : "memory");
      const uint64_t stream_once = evict_first_policy();  // weights: read once a step
      const uint64_t keep = evict_last_policy();          // activations: read by every CTA
      int step = 0;  // k-steps loaded so far: the ring position and phase run on across segments
      for_each_segment(sc, cluster, [&](const Segment& seg) {
        const int n0 = (seg.group * CLUSTER + rank) * BN;
        for (int k = seg.k0; k < seg.k1; ++k, ++step) {
          const int s = step % STAGES;
          mbar_wait(empty(s), ((step / STAGES) & 1) ^ 1);
#ifdef DG_SKIP_LOAD
          mbar_expect_tx(full(s), 0);
          continue;
#endif
          mbar_expect_tx(full(s), W_STAGE + X_STAGE);
          tma_load(w_smem + s * W_STAGE, &w_map, k * BK, n0, full(s), stream_once);
          tma_load_multicast(x_smem + s * X_STAGE + rank * X_PART, &x_map, k * BK, rank * (BM / CLUSTER),
                             full(s), (1u << CLUSTER) - 1, keep);
        }
      });
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int c = wg - 1;  // weight rows c * 64 .. c * 64 + 63 of this CTA's tile
    const int ct = threadIdx.x - 128;  // 0..255 over both consumers
    const int warp = tid / 32, lane = tid % 32;
    float d[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) d[j] = 0.f;
    int step = 0;
    for_each_segment(sc, cluster, [&](const Segment& seg) {
      for (int k = seg.k0; k < seg.k1; ++k, ++step) {
        const int s = step % STAGES;
        mbar_wait(full(s), (step / STAGES) & 1);
        __syncwarp();  // wgmma instructions are warp-aligned
        fence_acc(d);
        wgmma_fence();
#ifndef DG_SKIP_MMA
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
          const uint64_t da = smem_desc(w_smem + s * W_STAGE + c * 64 * (BK * 2) + kk * 32);
          const uint64_t db = smem_desc(x_smem + s * X_STAGE + kk * 32);
          wgmma_m64n256k16(d, da, db, (k > seg.k0 || kk > 0) ? 1u : 0u);
        }
#endif
        wgmma_commit();
        fence_acc(d);
        wgmma_wait<1>();  // the previous k-step's MMAs are done: every CTA may refill its stage
        if (k > seg.k0 && tid == 0) {
          for (int cta = 0; cta < CLUSTER; ++cta) mbar_arrive_cluster(empty((step - 1) % STAGES), cta);
        }
        __syncwarp();
      }
      wgmma_wait<0>();
      fence_acc(d);
      if (tid == 0) {
        for (int cta = 0; cta < CLUSTER; ++cta) mbar_arrive_cluster(empty((step - 1) % STAGES), cta);
      }
      __syncwarp();
      // Meanwhile the producer is already loading the next segment's first stages.
      float* mine = partials + static_cast<size_t>(blockIdx.x) * (128 * 256);
      if (!seg.owner) {
        // A partial in register order: thread ct's j-th accumulator at [j][ct], so the owner's same thread reads it.
#pragma unroll
        for (int j = 0; j < 128; ++j) __stcg(mine + j * 256 + ct, d[j]);
        asm volatile("bar.sync 1, 256;" ::: "memory");
        if (ct == 0) {
          __threadfence();
          asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(flags + blockIdx.x), "r"(1) : "memory");
        }
        return;
      }
      // The owner: add the partials of the later clusters whose ranges start inside this group, in cluster order.
      const int group_end = (seg.group - sc.whole + 1) * sc.ks;  // in tail units
      for (int c2 = cluster + 1; seg.group >= sc.whole && c2 < sc.clusters && sc.range_begin(c2) < group_end; ++c2) {
        if (sc.range_begin(c2) == sc.range_begin(c2 + 1)) continue;  // an empty range contributes nothing
        const int slot = c2 * CLUSTER + rank;
        if (ct == 0) {
          int ready = 0;
          do {
            asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(ready) : "l"(flags + slot) : "memory");
          } while (!ready);
          flags[slot] = 0;  // consumed: the next launch starts from 0
        }
        asm volatile("bar.sync 1, 256;" ::: "memory");
        const float* theirs = partials + static_cast<size_t>(slot) * (128 * 256);
#pragma unroll
        for (int j = 0; j < 128; ++j) d[j] += __ldcg(theirs + j * 256 + ct);
      }
      // Accumulator element (weight row r, token t) -> y[t][n0 + r], rounded in pairs (a lone cvt reading an
      // accumulator makes ptxas serialize the wgmmas, C7514).
      const int n0 = (seg.group * CLUSTER + rank) * BN;
      const int r = n0 + c * 64 + warp * 16 + lane / 4;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const int t = j * 8 + (lane % 4) * 2;
        const __nv_bfloat162 lo = __floats2bfloat162_rn(d[4 * j + 0], d[4 * j + 1]);
        const __nv_bfloat162 hi = __floats2bfloat162_rn(d[4 * j + 2], d[4 * j + 3]);
        y[static_cast<size_t>(t) * n_total + r] = lo.x;
        y[static_cast<size_t>(t + 1) * n_total + r] = lo.y;
        y[static_cast<size_t>(t) * n_total + r + 8] = hi.x;
        y[static_cast<size_t>(t + 1) * n_total + r + 8] = hi.y;
      }
    });
  }
  __syncwarp();
  cluster_sync();  // no CTA leaves while a peer may still arrive on its barriers
}

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                  const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                  CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled through the runtime (no link against libcuda).
EncodeTiled encode_tiled() {
  static EncodeTiled fn = nullptr;
  if (fn == nullptr) {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
            cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<EncodeTiled>(p);
  }
  return fn;
}

bool encode_map(CUtensorMap* map, const void* ptr, int rows, int cols, int box_rows) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * 2};
  const cuuint32_t box[2] = {BK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem[2] = {1, 1};
  const EncodeTiled encode = encode_tiled();
  return encode != nullptr && encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(ptr), dims, strides, box,
                                elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Clusters resident at once for this kernel (its grid): the device's maximum, so every owner's wait ends.
int resident_clusters() {
  static int clusters = 0;
  if (clusters == 0) {
    if (cudaFuncSetAttribute(decode_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES) !=
        cudaSuccess)
      return -1;
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(sms / CLUSTER * CLUSTER);
    cfg.blockDim = dim3(384);
    cfg.dynamicSmemBytes = SMEM_BYTES;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, decode_gemm_kernel, &cfg) != cudaSuccess || n <= 0) return -1;
    clusters = n;
  }
  return clusters;
}

constexpr size_t FLAG_BYTES = 4096;  // one int a CTA, ahead of the partials

}  // namespace

extern "C" {

// The row count, N and K this kernel serves (the Python side asks before it routes a projection here).
int lmi_decode_gemm_rows() { return BM; }
int lmi_decode_gemm_n_multiple() { return BN * CLUSTER; }
int lmi_decode_gemm_k_multiple() { return BK; }

// Bytes of the zero-filled workspace a launch needs (the stream-K flags and one fp32 partial tile a CTA); the
// kernel leaves the flags at zero again. -1 if the kernel cannot run on this device.
long long lmi_decode_gemm_workspace_bytes() {
  const int clusters = resident_clusters();
  if (clusters < 0) return -1;
  return static_cast<long long>(FLAG_BYTES) + static_cast<long long>(clusters) * CLUSTER * 128 * 256 * 4;
}

// y[256, n] = x[256, k] @ w[n, k]^T on `stream`, with `workspace` (lmi_decode_gemm_workspace_bytes, zero-filled
// before the first launch; launches that share it must be stream-ordered). 0 on success; -1 for a shape,
// alignment or workspace it does not serve (nothing launched); otherwise the CUDA error of the launch.
int lmi_decode_gemm(const void* x, const void* w, void* y, int m, int n, int k, void* workspace,
                    long long workspace_bytes, void* stream) {
  if (m != BM || n <= 0 || n % (BN * CLUSTER) != 0 || k <= 0 || k % BK != 0) return -1;
  if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y) |
       reinterpret_cast<uintptr_t>(workspace)) & 15)
    return -1;
  const int clusters = resident_clusters();
  if (clusters < 0 || workspace_bytes < lmi_decode_gemm_workspace_bytes() ||
      clusters * CLUSTER * 4 > static_cast<int>(FLAG_BYTES))
    return -1;
  CUtensorMap x_map, w_map;
  if (!encode_map(&x_map, x, m, k, BM / CLUSTER) || !encode_map(&w_map, w, n, k, BN)) return -1;
  int* flags = static_cast<int*>(workspace);
  float* partials = reinterpret_cast<float*>(static_cast<uint8_t*>(workspace) + FLAG_BYTES);
  decode_gemm_kernel<<<clusters * CLUSTER, 384, SMEM_BYTES, static_cast<cudaStream_t>(stream)>>>(
      x_map, w_map, static_cast<__nv_bfloat16*>(y), n, k, partials, flags);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
