"""Add-ons of a generation job: the hook interface (SamplingHook), the per-job registry of hooks and
caches, LoRA, textual-inversion embeddings and the VAE choice."""
