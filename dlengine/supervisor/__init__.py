"""The supervisor process, its per-mountpath worker pools, and the workers."""
