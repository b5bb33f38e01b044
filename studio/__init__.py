"""Latent Studio: a desktop studio for local generative image models."""

import os as _os

__version__ = "0.1.0"

# The same request gives the same pixels whatever path the numbers took through memory:
# Intel MKL (torch's CPU BLAS) otherwise picks kernels by the alignment of each array and,
# on CPUs without AVX-512 (an AMD EPYC here), its sums then differ in their last bits, so
# a GGUF F16 transformer drew other pixels than the same weights in a plain module. Its conditional-numerical-reproducibility mode costs nothing
# measurable here (matmul, linear and conv timings within noise). Set before torch loads
# MKL; a user's own MKL_CBWR wins.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
