# The GPU executor: one Python process per tensor-parallel rank, driven by the TypeScript engine over
# the executor protocol (protocol.py). It never schedules: each `execute` message is one step's plan,
# and the reply carries only the sampled token ids (and logprobs when asked).
PROTOCOL_VERSION = 1
