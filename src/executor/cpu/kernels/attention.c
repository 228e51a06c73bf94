// WebAssembly SIMD128 paged attention for one query row: every head attends over the positions whose
// KV slots are listed in `slots` (the caller already applied the causal limit and sliding window).
// Softmax in fp32 with a Cephes-style expf (about 1 ulp), since -nostdlib leaves no libm.
#include <wasm_simd128.h>

float expf_approx(float x) {
  if (x < -87.33f) return 0.0f;
  if (x > 88.72f) x = 88.72f;
  float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float z = r * r;
  float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
             1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  union {
    int i;
    float f;
  } s;
  s.i = ((int)n + 127) << 23;
  return y * s.f;
}

static inline float hsum4(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

// out[nh*hd], q[nh*hd]; kc/vc: one layer's cache, slot s of kv head g at (s*nkv + g)*hd; scores: n floats.
__attribute__((export_name("attend_row"))) void attend_row(float *out, const float *q, const float *kc,
                                                             const float *vc, const int *slots, int n, int nh,
                                                             int nkv, int hd, float scale, float *scores) {
  int group = nh / nkv;
  int hd4 = hd & ~3;
  int stride = nkv * hd;
  for (int h = 0; h < nh; h++) {
    const float *qh = q + h * hd;
    int g = (h / group) * hd;
    float mx = -3.0e38f;
    for (int j = 0; j < n; j++) {
      const float *k = kc + (long)slots[j] * stride + g;
      v128_t a = wasm_f32x4_splat(0);
      for (int i = 0; i < hd4; i += 4) a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_v128_load(qh + i), wasm_v128_load(k + i)));
      float d = hsum4(a);
      for (int i = hd4; i < hd; i++) d += qh[i] * k[i];
      d *= scale;
      scores[j] = d;
      if (d > mx) mx = d;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) {
      float e = expf_approx(scores[j] - mx);
      scores[j] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
    float *o = out + h * hd;
    for (int i = 0; i < hd; i++) o[i] = 0;
    for (int j = 0; j < n; j++) {
      const float *v = vc + (long)slots[j] * stride + g;
      float p = scores[j] * inv;
      v128_t pv = wasm_f32x4_splat(p);
      for (int i = 0; i < hd4; i += 4) wasm_v128_store(o + i, wasm_f32x4_add(wasm_v128_load(o + i), wasm_f32x4_mul(pv, wasm_v128_load(v + i))));
      for (int i = hd4; i < hd; i++) o[i] += p * v[i];
    }
  }
}
