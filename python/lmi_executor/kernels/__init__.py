# Triton kernels for the CUDA path (imported only when device=cuda and Triton is present).
