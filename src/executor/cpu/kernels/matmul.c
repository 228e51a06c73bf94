// WebAssembly SIMD128 matmul kernels of the CPU executor, for fp32 weights and for bf16 weights (half
// the memory traffic: decode is bound by streaming weights). x and y are always fp32. The shared body is
// matmul-body.h; a bf16 value widens to f32 by moving its 16 bits into the high half of a 32-bit word.
#include <wasm_simd128.h>

#define WT float
#define WLOAD(p) wasm_v128_load(p)
#define WSCALAR(p) (*(p))
#define SUFFIX(name) name##_f32
#include "matmul-body.h"
#undef WT
#undef WLOAD
#undef WSCALAR
#undef SUFFIX

static inline float bf16_to_f32(unsigned short h) {
  union {
    unsigned int u;
    float f;
  } v;
  v.u = (unsigned int)h << 16;
  return v.f;
}

#define WT unsigned short
#define WLOAD(p) wasm_i32x4_shl(wasm_u32x4_load16x4(p), 16)
#define WSCALAR(p) bf16_to_f32(*(p))
#define SUFFIX(name) name##_bf16
#include "matmul-body.h"

__attribute__((export_name("matmul_nt"))) void matmul_nt(float *y, const float *x, const float *w, int M, int N,
                                                           int K, int ldy) {
  matmul_nt_f32(y, x, w, M, N, K, ldy);
}

__attribute__((export_name("matmul_nt_bf16"))) void matmul_nt_bf16_export(float *y, const float *x,
                                                                         const unsigned short *w, int M, int N,
                                                                         int K, int ldy) {
  matmul_nt_bf16(y, x, w, M, N, K, ldy);
}
