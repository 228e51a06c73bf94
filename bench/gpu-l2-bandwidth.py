# Read bandwidth of a buffer that stays in L2 against one that streams from HBM: a Triton kernel whose programs
# read 4,096-element bf16 tiles of the buffer round-robin (2 GiB read in all per timing, triton.testing.do_bench).
# A ceiling for kernels that re-read an operand from L2 (e.g. every output tile of a decode GEMM re-reading the
# activations). H100: 50 MB of L2 in two partitions, so a 16 MB buffer is served from L2, 32 MB partly from the far
# partition, 4 GB from HBM.
#   python3 bench/gpu-l2-bandwidth.py [--mb 16,32,4096]
import argparse

import torch
import triton
import triton.language as tl


@triton.jit
def _read(x_ptr, out_ptr, n_elem, iters, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(iters):
        base = ((pid + i * nprog) * BLOCK) % n_elem
        acc += tl.load(x_ptr + base + offs).to(tl.float32)
    tl.store(out_ptr + pid * BLOCK + offs, acc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default="16,32,4096")
    block = 4096
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for mb in (int(m) for m in ap.parse_args().mb.split(",")):
        n = mb * 1024 * 1024 // 2
        x = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        for progs in (sms * 4, sms * 8):
            out = torch.empty(progs * block, device="cuda")
            iters = max(1, 1024**3 // (progs * block))

            def run(out=out, progs=progs, iters=iters):
                _read[(progs,)](x, out, n, iters, BLOCK=block, num_warps=8)

            ms = triton.testing.do_bench(run, warmup=5, rep=50)
            print(f"buffer {mb} MB, {progs} programs: {progs * block * iters * 2 / ms / 1e9:.2f} TB/s read", flush=True)


if __name__ == "__main__":
    main()
