"""The speech-token LLM: Qwen2 backbone, repetition-aware sampling, eager / CUDA-graph / Triton decoders."""
