# Tensor-parallel state of this process: rank, world size, and the collectives the model needs.
# Invariant: with world size 1 every collective is the identity and torch.distributed is never touched,
# so the single-GPU and CPU paths carry no distributed overhead.
import torch


def shares_kv_heads(num_kv_heads: int, world_size: int) -> bool:
    """Whether ranks share KV heads at this degree: fewer KV heads than ranks, the ranks dividing evenly over them
    (consecutive ranks then keep copies of the KV head their query heads read)."""
    return 0 < num_kv_heads < world_size and world_size % num_kv_heads == 0


class TensorParallel:
    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank = rank
        self.world_size = world_size
        self._relay = None  # the process group broadcast_object uses (None: the default one)

    def init(self, init_method: str, backend: str, device: torch.device) -> None:
        if self.world_size == 1:
            return
        import torch.distributed as dist

        dist.init_process_group(backend=backend, init_method=init_method, rank=self.rank, world_size=self.world_size)
        # Rank 0 relays Node's messages over a CPU (gloo) group: an NCCL broadcast would queue behind the GPU
        # work already launched, so the other ranks could not receive step N+1 while step N runs.
        self._relay = dist.new_group(backend="gloo") if backend != "gloo" else None
        if device.type == "cuda":
            # A first collective here makes NCCL set up its communicator before memory profiling.
            t = torch.ones(1, device=device)
            dist.all_reduce(t)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return x
        import torch.distributed as dist

        dist.all_reduce(x)
        return x

    def all_gather_last_dim(self, x: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return x
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=-1)

    def broadcast_object(self, obj=None):
        """Rank 0 sends, others receive: how ranks > 0 get each message Node sent to rank 0."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._relay)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def shard(self, n: int, what: str) -> int:
        if n % self.world_size:
            raise ValueError(f"{what}={n} is not divisible by tensor_parallel_degree={self.world_size}")
        return n // self.world_size

    def kv_heads(self, n: int) -> int:
        """KV heads per rank: n / world_size, or 1 when there are fewer KV heads than ranks and the ranks divide
        evenly over them: consecutive ranks then hold copies of one KV head (the one their query heads read;
        reshard.tensor_split places it), as Llama-3-8B's 8 KV heads do at degree 16 or Qwen2-7B's 4 at 8."""
        if shares_kv_heads(n, self.world_size):
            return 1
        if n % self.world_size:
            raise ValueError(f"num_key_value_heads={n} is neither divisible by tensor_parallel_degree="
                             f"{self.world_size} nor a divisor of it")
        return n // self.world_size
