"""Checkpoint layout converters (diffusers <-> original LDM/SGM single-file layouts)."""
