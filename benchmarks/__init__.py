"""Benchmarks (``make bench``): bare vs instrumented, same run, medians and ratios."""
