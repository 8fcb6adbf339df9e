"""Benchmarks for Prisma (``python -m bench.stylize_bench``)."""
