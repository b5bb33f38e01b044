"""``studio bench``: speed, memory and responsiveness measured side by side in one run.

Each figure compares two ways of doing the same work (the app's path against a bare
diffusers call, bf16 against fp32, ...) measured interleaved in one process, and reports
medians: the machines this runs on are shared and noisy, so ratios are what to read.
"""
