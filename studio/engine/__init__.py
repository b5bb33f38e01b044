"""torch + diffusers: model discovery and loading, device policy, sampling, previews.

No Qt here. Import submodules directly; this package imports nothing heavy by itself.
"""
