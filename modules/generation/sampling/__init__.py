"""Sampling: one pipeline call (a pass) with its hooks, progress and previews; the sampler and schedule
registry; A1111's seeds, noise streams and sampler arithmetic; latents to and from pixels."""
