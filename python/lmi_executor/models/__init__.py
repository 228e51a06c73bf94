# Model families the executor runs; each module exposes a class built from (ModelConfig, dtype,
# device, TensorParallel) with load_weight(name, tensor), init_dummy(seed) and forward(...).
