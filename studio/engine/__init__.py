"""torch + diffusers: model discovery and loading, device policy, sampling, previews.

No Qt here. Import submodules directly; this package imports nothing heavy by itself.
"""

import os as _os

# OpenMP threads that spin while waiting are a disaster when the cores are shared (the GUI
# thread, other programs): each parallel region waits a scheduler time slice for a thread
# that was preempted. Measured by `studio bench` (docs/benchmarks.md): a tiny-model
# generation took 5-20x longer on a busy 2-core machine. Must be set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# diffusers' model packages (every transformer, UNet, VAE and ControlNet class at once) are
# imported one model at a time, as asked for: see ``studio.engine.lazy_imports``.
# ``STUDIO_EAGER_IMPORTS=1`` imports them as diffusers does (a check against a new diffusers).
if not _os.environ.get("STUDIO_EAGER_IMPORTS"):
    from studio.engine import lazy_imports as _lazy_imports

    _lazy_imports.install()
