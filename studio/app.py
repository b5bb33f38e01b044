"""Composition root of the GUI: settings, the engine (made after the window shows), the window.

Only this module and ``studio.cli`` know the concrete engine; the UI sees ``EngineService``.
"""

from __future__ import annotations

import argparse


def run_app(args: argparse.Namespace) -> int:
    """Open the studio window on ``args.paths`` and run until it closes."""
    from studio.core.config import load_config
    from studio.ui.launch import run_gui

    config = load_config()  # flags win over the saved settings
    device = args.device if args.device != "auto" else config.device
    dtype = args.dtype if args.dtype != "auto" else config.dtype
    model_dirs = [*config.model_dirs, *args.model_dir]
    hf_cache = not args.no_hf_cache

    def engine_factory():
        # Heavy imports (torch, diffusers) happen here, after the window is up.
        from studio.engine.engine import Engine
        from studio.engine.models.loading import quiet_libraries

        quiet_libraries()
        from studio.engine.services import table_stakes_services

        engine = Engine(device=device, dtype=dtype, model_dirs=model_dirs, hf_cache=hf_cache)
        engine.table_stakes = table_stakes_services(engine)  # model manager, upscale for the UI
        return engine

    return run_gui(engine_factory, ["studio"], list(args.paths))
