// Body of the SIMD128 matmul y[M,N] = x[M,K] . w[N,K]^T, included once per weight type by matmul.c:
// the includer defines WT (weight element type), WLOAD (4 weights -> f32x4), WSCALAR (1 weight -> float)
// and SUFFIX (name mangling). 4x4 register blocks for prefill-sized M, 1x4 for the M tail and decode;
// K and N tails are scalar. No allocation, no stack use beyond registers.
#ifndef HSUM_DEFINED
#define HSUM_DEFINED
static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}
#endif

static void SUFFIX(row1)(float *y, const float *x, const WT *w, int N, int K, int n0) {  // y: one row
  int K4 = K & ~3;
  int n = n0;
  for (; n + 4 <= N; n += 4) {
    const WT *w0 = w + (long)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < K4; k += 4) {
      v128_t xv = wasm_v128_load(x + k);
      a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(xv, WLOAD(w0 + k)));
      a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(xv, WLOAD(w1 + k)));
      a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(xv, WLOAD(w2 + k)));
      a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(xv, WLOAD(w3 + k)));
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (int k = K4; k < K; k++) {
      s0 += x[k] * WSCALAR(w0 + k);
      s1 += x[k] * WSCALAR(w1 + k);
      s2 += x[k] * WSCALAR(w2 + k);
      s3 += x[k] * WSCALAR(w3 + k);
    }
    y[n] = s0;
    y[n + 1] = s1;
    y[n + 2] = s2;
    y[n + 3] = s3;
  }
  for (; n < N; n++) {
    const WT *wr = w + (long)n * K;
    v128_t a = wasm_f32x4_splat(0);
    for (int k = 0; k < K4; k += 4) a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_v128_load(x + k), WLOAD(wr + k)));
    float s = hsum(a);
    for (int k = K4; k < K; k++) s += x[k] * WSCALAR(wr + k);
    y[n] = s;
  }
}

#ifndef ACC
#define ACC(i, j) a##i##j = wasm_f32x4_add(a##i##j, wasm_f32x4_mul(x##i, w##j))
#endif

// Four rows of x against four rows of w: 16 accumulators, each k step loads 8 vectors for 16 products.
static void SUFFIX(block4x4)(float *y, const float *x, const WT *w, int ldy, int K, int m, int n) {
  const float *xr0 = x + (long)m * K, *xr1 = xr0 + K, *xr2 = xr1 + K, *xr3 = xr2 + K;
  const WT *wr0 = w + (long)n * K, *wr1 = wr0 + K, *wr2 = wr1 + K, *wr3 = wr2 + K;
  v128_t z = wasm_f32x4_splat(0);
  v128_t a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
  v128_t a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
  int K4 = K & ~3;
  for (int k = 0; k < K4; k += 4) {
    v128_t w0 = WLOAD(wr0 + k), w1 = WLOAD(wr1 + k);
    v128_t w2 = WLOAD(wr2 + k), w3 = WLOAD(wr3 + k);
    v128_t x0 = wasm_v128_load(xr0 + k), x1 = wasm_v128_load(xr1 + k);
    v128_t x2 = wasm_v128_load(xr2 + k), x3 = wasm_v128_load(xr3 + k);
    ACC(0, 0); ACC(0, 1); ACC(0, 2); ACC(0, 3);
    ACC(1, 0); ACC(1, 1); ACC(1, 2); ACC(1, 3);
    ACC(2, 0); ACC(2, 1); ACC(2, 2); ACC(2, 3);
    ACC(3, 0); ACC(3, 1); ACC(3, 2); ACC(3, 3);
  }
  float s[4][4] = {
      {hsum(a00), hsum(a01), hsum(a02), hsum(a03)},
      {hsum(a10), hsum(a11), hsum(a12), hsum(a13)},
      {hsum(a20), hsum(a21), hsum(a22), hsum(a23)},
      {hsum(a30), hsum(a31), hsum(a32), hsum(a33)},
  };
  const float *xs[4] = {xr0, xr1, xr2, xr3};
  const WT *ws[4] = {wr0, wr1, wr2, wr3};
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 4; j++) {
      float t = s[i][j];
      for (int k = K4; k < K; k++) t += xs[i][k] * WSCALAR(ws[j] + k);
      y[(long)(m + i) * ldy + n + j] = t;
    }
  }
}

// y rows are ldy apart, so a thread can fill a column range [n0, n0+N) of a wider y.
void SUFFIX(matmul_nt)(float *y, const float *x, const WT *w, int M, int N, int K, int ldy) {
  int M4 = M & ~3;
  int N4 = N & ~3;
  // n outer so four weight rows stay in L1 while the x rows stream past them.
  for (int n = 0; n < N4; n += 4) {
    for (int m = 0; m < M4; m += 4) SUFFIX(block4x4)(y, x, w, ldy, K, m, n);
  }
  for (int m = 0; m < M4; m++) {
    if (N4 < N) SUFFIX(row1)(y + (long)m * ldy, x + (long)m * K, w, N, K, N4);
  }
  for (int m = M4; m < M; m++) SUFFIX(row1)(y + (long)m * ldy, x + (long)m * K, w, N, K, 0);
}
