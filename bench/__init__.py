"""Benchmarks (not tests): reproducible figures for DESIGN §8."""
