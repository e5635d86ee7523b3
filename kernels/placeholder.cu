// Placeholder until the first CUDA kernel lands.
