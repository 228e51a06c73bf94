// Our Hopper GEMM (kernels/decode_gemm.py builds and calls it): y[M, N] = x[M, K] @ w[N, K]^T, bf16 in and out, fp32
// accumulation, K a multiple of 64, any M (256-token blocks; the loads zero-fill the rows past M and the stores leave
// them out); and the same with SiLU-and-mul in the epilogue for a gate_up weight ([gate; up], 2 * I rows):
// act[M, I] = silu(x @ gate^T) * (x @ up^T), rounded as the unfused path rounds (gate and up to bf16, SiLU to bf16,
// the product to bf16: kernels/fused.py's silu_and_mul). The executor uses the second form with 224-row tiles (112
// features) at row counts that are whole 256-token blocks (decode_gemm.fuses_rows), where it saves the separate
// SiLU pass and half of gate_up's output (bench/gpu-decode-gemm.py --swiglu, Llama-3-8B: 98.3 against 108.6 us for
// cuBLASLt + silu_and_mul at 256 rows, 2,825 against 2,860 at 8,192; docs/benchmarks.md); the plain form only
// matches cuBLASLt, so it serves benchmarks.
//
// Its shape follows what `ncu` showed of cuBLASLt's fastest kernel at 256 x 28672 x 4096
// (nvjet_sm90_tst_112x128_64x7_1x2: persistent, 112 x 128 tiles, 7 stages, pairs of CTAs):
//   - the tokens are the MMA's M side: a CTA owns 128 tokens (two consumer warpgroups of 64, one wgmma m64nBNk16
//     each per 16 of K) and BN weight rows (64, 96 or 112; with SiLU 112 or 224: half gate rows, half the same
//     features' up rows), so its accumulators are small (BN / 2 registers a thread; ptxas compiles the kernel for
//     its launch bound's 168 a thread and spilled past that in a variant that held more) and so are its stages
//     (24-44 KB: 4-8 of them);
//   - the two CTAs of a cluster take the two token halves of the same weight tile; each loads half of the weight
//     tile and multicasts it to both (TMA .multicast::cluster), so every weight byte leaves L2 once;
//   - warp specialization: warpgroup 0's first thread issues the TMA loads into the stage ring (full barriers: its
//     expect_tx plus the bytes of both CTAs' multicasts; empty barriers: 2 consumers x 2 CTAs arrive, since the
//     peer's multicast writes into the stage too); it runs on across tiles, so the next tile's loads overlap an
//     epilogue;
//   - persistent: one CTA an SM (the device's maximum of resident clusters), tiles round-robin over the clusters,
//     token blocks fastest within groups of 8 (prompt-sized steps keep their working set in L2);
//   - the epilogue writes each warpgroup's [64, BN] box to shared memory and TMA-stores it (asynchronously).
// Invariants: a result depends only on the operands (one fp32 dot product in K order an element, rounded once).
// Pointers 16-byte aligned, rows contiguous.
// DGW_* macros build the variants bench/gpu-decode-gemm.py compares (stages, cache hints, grid, SiLU math).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

constexpr int TOKENS = 256;
constexpr int CTA_TOKENS = 128;  // two consumer warpgroups of 64: the wgmma's M
constexpr int BK = 64;           // 128 bytes of bf16: one row of the TMA 128-byte swizzle
constexpr int CLUSTER = 2;       // along the tokens: the CTAs share (multicast) the weight tile
constexpr int X_STAGE = CTA_TOKENS * BK * 2;  // 16 KB
constexpr int SMEM_LIMIT = 227 * 1024;  // an sm_90 block's dynamic shared memory

// Shared memory: STAGES x (weight tile + token tile), then the epilogue's output tile (one [64 tokens, OUT_COLS]
// box a consumer warpgroup, TMA-stored), then the barriers; as many stages as fit, at most 8.
template <int BN, bool SWIGLU>
struct Tile {
  static constexpr int W_STAGE = BN * BK * 2;
  static constexpr int HALF = BN / 2;  // weight rows each CTA of the pair loads (a multiple of the 8-row swizzle atom)
  static constexpr int OUT_COLS = SWIGLU ? HALF : BN;
  static constexpr int EPI = 2 * 64 * OUT_COLS * 2;
  static constexpr int FIT = (SMEM_LIMIT - 1024 - EPI - 16 * 8) / (W_STAGE + X_STAGE);
#ifdef DGW_STAGES
  static constexpr int STAGES = DGW_STAGES;
#else
  // With SiLU 6 of the 7 that fit: at the power limit 111.4 against 114.1 us (short: 99.6 against 98.1).
  static constexpr int STAGES = SWIGLU ? (FIT < 6 ? FIT : 6) : (FIT < 8 ? FIT : 8);
#endif
  static constexpr int SMEM = 1024 + STAGES * (W_STAGE + X_STAGE) + EPI + 2 * STAGES * 8;
  static_assert(HALF % 8 == 0, "each half of the weight tile is whole 8-row swizzle atoms");
  static_assert(SMEM <= SMEM_LIMIT, "stages and epilogue fit");
};

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

// The box at (c0, c1) of `map` from shared memory at `src`, in the bulk group of this thread.
__device__ __forceinline__ void tma_store(const CUtensorMap* map, int c0, int c1, uint32_t src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(c0), "r"(c1), "r"(src)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

__device__ __forceinline__ void tma_store_wait_read() {  // this thread's stores have read their shared memory
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}

__device__ __forceinline__ void tma_store_wait_all() {  // and written global memory
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

__device__ __forceinline__ void fence_proxy_async() {  // generic-proxy writes to shared memory, seen by TMA
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}

[[maybe_unused]] __device__ __forceinline__ uint64_t evict_normal_policy() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(p));
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
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}


template <int N>
__device__ __forceinline__ void wgmma_m64k16(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate);

template <>
__device__ __forceinline__ void wgmma_m64k16<64>(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

template <>
__device__ __forceinline__ void wgmma_m64k16<96>(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47}, %48, %49, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

template <>
__device__ __forceinline__ void wgmma_m64k16<112>(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %58, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n112k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55}, %56, %57, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

template <>
__device__ __forceinline__ void wgmma_m64k16<224>(float* d, uint64_t desc_a, uint64_t desc_b, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %114, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n224k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111}, %112, %113, p, 1, 1, 0, 0;\n}\n"
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
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

template <int R>
__device__ __forceinline__ void fence_regs(float* d) {
#pragma unroll
  for (int j = 0; j < R; ++j) asm volatile("" : "+f"(d[j])::"memory");
}

// SiLU as kernels/fused.py computes it, g / (1 + e^-g) rounded to bf16, with the fast division (__fdividef: ~2 ulp
// of fp32, which the rounding to bf16 hides almost always; the exact division cost the epilogue ~3 us a call).
__device__ __forceinline__ float silu_bf16(float g) {
#ifdef DGW_EXACT_DIV
  return __bfloat162float(__float2bfloat16_rn(g / (1.0f + __expf(-g))));
#else
  return __bfloat162float(__float2bfloat16_rn(__fdividef(g, 1.0f + __expf(-g))));
#endif
}

// y: [256, n_out] where n_out = N (plain) or N / 2 (SWIGLU); w: [N, K].
template <int BN, bool SWIGLU>
__global__ void __cluster_dims__(CLUSTER, 1, 1) __launch_bounds__(384, 1)
    decode_gemm_wmc_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                           const __grid_constant__ CUtensorMap y_map, int m_total, int n_total, int k_total) {
  using T = Tile<BN, SWIGLU>;
  constexpr int R = BN / 2;  // accumulator registers a thread: 64 tokens x BN over 128 threads
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // the same in both CTAs: multicast relies on it
  const uint32_t w_smem = base;
  const uint32_t x_smem = base + T::STAGES * T::W_STAGE;
  const uint32_t epi_smem = x_smem + T::STAGES * X_STAGE;
  const uint32_t bars = epi_smem + T::EPI;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (T::STAGES + s); };

  const int wg = threadIdx.x / 128;
  const int tid = threadIdx.x % 128;
  const uint32_t rank = cluster_rank();
  const int cluster = blockIdx.x / CLUSTER;
  const int clusters = gridDim.x / CLUSTER;
  const int n_tiles = SWIGLU ? (n_total / 2) / T::HALF : n_total / BN;  // weight tiles
  const int m_blocks = (m_total + TOKENS - 1) / TOKENS;  // 256-token blocks (one a cluster); TMA zero-fills the
                                                         // rows past m_total and the stores leave them out
  const int tiles = n_tiles * m_blocks;
  const int ksteps = k_total / BK;
  // Tile -> (token block, weight tile), token blocks fastest within groups of up to 8: the clusters at work at
  // once share a few weight tiles and a few token blocks, so both stay in L2 (prompt-sized steps).
#ifndef DGW_GROUP
#define DGW_GROUP 8
#endif
  const int group = m_blocks < DGW_GROUP ? m_blocks : DGW_GROUP;
  auto tile_of = [&](int i, int& mb, int& t) {
    const int g0 = (i / (group * n_tiles)) * group;
    const int g = (m_blocks - g0) < group ? (m_blocks - g0) : group;  // the last group may be short
    const int local = i - g0 * n_tiles;
    mb = g0 + local % g;
    t = local / g;
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < T::STAGES; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 2 * CLUSTER);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster_sync();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (tid == 0) {
#ifdef DGW_NOHINT
      const uint64_t stream_once = evict_normal_policy(), keep = evict_normal_policy();
#else
      const uint64_t stream_once = evict_first_policy();
      const uint64_t keep = evict_last_policy();
#endif
      int step = 0;
      for (int i = cluster; i < tiles; i += clusters) {
        int mb, t;
        tile_of(i, mb, t);
        // This CTA's half of the weight tile: the gate rows (rank 0) or the up rows (rank 1) of features
        // t * HALF.., or rows t * BN + rank * HALF.. of a plain weight.
        const int w_row = SWIGLU ? rank * (n_total / 2) + t * T::HALF : t * BN + rank * T::HALF;
        for (int k = 0; k < ksteps; ++k, ++step) {
          const int s = step % T::STAGES;
          mbar_wait(empty(s), ((step / T::STAGES) & 1) ^ 1);
          mbar_expect_tx(full(s), T::W_STAGE + X_STAGE);
          tma_load_multicast(w_smem + s * T::W_STAGE + rank * (T::HALF * BK * 2), &w_map, k * BK, w_row, full(s),
                             (1u << CLUSTER) - 1, stream_once);
          tma_load(x_smem + s * X_STAGE, &x_map, k * BK, mb * TOKENS + rank * CTA_TOKENS, full(s), keep);
        }
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int c = wg - 1;  // tokens c * 64 .. c * 64 + 63 of this CTA's 128
    const int warp = tid / 32, lane = tid % 32;
    float d[R];
#pragma unroll
    for (int j = 0; j < R; ++j) d[j] = 0.f;
    int step = 0;
    for (int i = cluster; i < tiles; i += clusters) {
      int mb, t;
      tile_of(i, mb, t);
      for (int k = 0; k < ksteps; ++k, ++step) {
        const int s = step % T::STAGES;
        mbar_wait(full(s), (step / T::STAGES) & 1);
        __syncwarp();
        fence_regs<R>(d);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
          const uint64_t da = smem_desc(x_smem + s * X_STAGE + c * 64 * (BK * 2) + kk * 32);
          const uint64_t db = smem_desc(w_smem + s * T::W_STAGE + kk * 32);
          wgmma_m64k16<BN>(d, da, db, (k > 0 || kk > 0) ? 1u : 0u);
        }
        wgmma_commit();
        fence_regs<R>(d);
        wgmma_wait<1>();
        if (k > 0 && tid == 0) {
          for (int cta = 0; cta < CLUSTER; ++cta) mbar_arrive_cluster(empty((step - 1) % T::STAGES), cta);
        }
        __syncwarp();
      }
      wgmma_wait<0>();
      fence_regs<R>(d);
      if (tid == 0) {
        for (int cta = 0; cta < CLUSTER; ++cta) mbar_arrive_cluster(empty((step - 1) % T::STAGES), cta);
      }
      __syncwarp();
      // Accumulator d[4j + i]: token row r0 (+8 for i >= 2), column 8j + (lane % 4) * 2 + (i & 1) of the tile; to
      // this warpgroup's [64, OUT_COLS] box in shared memory, then one TMA store (asynchronous: the next tile's
      // MMAs start at once; the box is rewritten only after the store has read it).
      const uint32_t box = epi_smem + c * (64 * T::OUT_COLS * 2);
      if (tid == 0) tma_store_wait_read();
      asm volatile("bar.sync %0, 128;" ::"r"(2 + c) : "memory");
      const int r0 = warp * 16 + lane / 4;
      const int col = (lane % 4) * 2;
      __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(smem_raw + (box - raw));
#pragma unroll
      for (int j = 0; j < T::OUT_COLS / 8; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          __nv_bfloat162 o;
          if constexpr (SWIGLU) {
            const float2 g = __bfloat1622float2(__floats2bfloat162_rn(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]));
            const int ju = j + T::HALF / 8;  // the up value of the same feature: HALF columns on
            const float2 u = __bfloat1622float2(__floats2bfloat162_rn(d[4 * ju + 2 * h], d[4 * ju + 2 * h + 1]));
#ifdef DGW_NO_SILU
            o = __floats2bfloat162_rn(g.x * u.x, g.y * u.y);  // a variant that leaves SiLU's math out (timing only)
#else
            o = __floats2bfloat162_rn(silu_bf16(g.x) * u.x, silu_bf16(g.y) * u.y);
#endif
          } else {
            o = __floats2bfloat162_rn(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
          }
          *reinterpret_cast<__nv_bfloat162*>(out + (r0 + 8 * h) * T::OUT_COLS + 8 * j + col) = o;
        }
      }
      fence_proxy_async();
      asm volatile("bar.sync %0, 128;" ::"r"(2 + c) : "memory");
      if (tid == 0) tma_store(&y_map, t * T::OUT_COLS, mb * TOKENS + rank * CTA_TOKENS + c * 64, box);
    }
    if (tid == 0) tma_store_wait_all();
  }
  __syncwarp();
  cluster_sync();
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

bool encode_map(CUtensorMap* map, const void* ptr, int rows, int cols, int box_rows, int box_cols = BK,
                bool swizzle = true) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * 2};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem[2] = {1, 1};
  const EncodeTiled encode = encode_tiled();
  return encode != nullptr && encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(ptr), dims, strides, box,
                                elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          swizzle ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Clusters resident at once for this kernel (its grid): the device's maximum, so every owner's wait ends.

template <int BN, bool SWIGLU>
int launch(const void* x, const void* w, void* y, int m, int n, int k, cudaStream_t stream) {
  using T = Tile<BN, SWIGLU>;
  static int clusters = 0;
  auto kernel = decode_gemm_wmc_kernel<BN, SWIGLU>;
  if (clusters == 0) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::SMEM) != cudaSuccess) return -1;
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(sms / CLUSTER * CLUSTER);
    cfg.blockDim = dim3(384);
    cfg.dynamicSmemBytes = T::SMEM;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess || clusters <= 0) {
      clusters = 0;
      return -1;
    }
  }
  const int tiles = (SWIGLU ? (n / 2) / T::HALF : n / BN) * ((m + TOKENS - 1) / TOKENS);
  CUtensorMap x_map, w_map, y_map;
  if (!encode_map(&x_map, x, m, k, CTA_TOKENS) || !encode_map(&w_map, w, n, k, T::HALF) ||
      !encode_map(&y_map, y, m, SWIGLU ? n / 2 : n, 64, T::OUT_COLS, false))
    return -1;
#ifdef DGW_GRID_ALL
  const int grid = tiles * CLUSTER;  // one tile a cluster: not persistent
#else
  const int grid = (tiles < clusters ? tiles : clusters) * CLUSTER;
#endif
  kernel<<<grid, 384, T::SMEM, stream>>>(x_map, w_map, y_map, m, n, k);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" {

// y = x @ w^T (swiglu = 0; y [m, n]) or silu(x @ gate^T) * (x @ up^T) (swiglu = 1, w = [gate; up] of n rows;
// y [m, n / 2]) with bn weight rows a tile (plain: 64, 96 or 112; swiglu: 112 or 224, i.e. 56 or 112 features a
// tile) on `stream`. 0 on success; -1 for a shape, tile or alignment it does not serve (nothing
// launched); else the CUDA error of the launch.
int lmi_decode_gemm(const void* x, const void* w, void* y, int m, int n, int k, int bn, int swiglu, void* stream) {
  if (m <= 0 || k <= 0 || k % BK != 0 || n <= 0) return -1;
  if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y)) & 15)
    return -1;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (swiglu) {
    if (n % bn != 0) return -1;
    if (bn == 112) return launch<112, true>(x, w, y, m, n, k, s);
    if (bn == 224) return launch<224, true>(x, w, y, m, n, k, s);
    return -1;
  }
  if (n % bn != 0) return -1;
  switch (bn) {
    case 64: return launch<64, false>(x, w, y, m, n, k, s);
    case 96: return launch<96, false>(x, w, y, m, n, k, s);
    case 112: return launch<112, false>(x, w, y, m, n, k, s);
    default: return -1;
  }
}

}  // extern "C"
