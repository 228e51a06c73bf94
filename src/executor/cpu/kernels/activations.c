// Gated-MLP activation of the CPU executor in WebAssembly: out[r][i] = silu(gu[r][i]) * gu[r][I + i] for
// rows of [gate | up] (Llama family). expf_approx (attention.c) is Cephes-accurate, about 1 ulp.
float expf_approx(float x);

__attribute__((export_name("silu_mul"))) void silu_mul(float *out, const float *gu, int rows, int I) {
  for (int r = 0; r < rows; r++) {
    const float *g = gu + (long)r * 2 * I;
    const float *u = g + I;
    float *o = out + (long)r * I;
    for (int i = 0; i < I; i++) o[i] = g[i] / (1.0f + expf_approx(-g[i])) * u[i];
  }
}
