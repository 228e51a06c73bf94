# Kernels for the CUDA path. The Triton ones are imported only when device=cuda and Triton is present;
# attention_launch (launch parameters) and lt_gemm (cuBLASLt through ctypes) need no Triton and load anywhere.
