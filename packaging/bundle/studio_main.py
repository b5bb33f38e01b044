"""The bundle's entry point: ``studio`` as pip installs it (the window with no command)."""

import multiprocessing
import os
import sys

from studio.cli import main


def _import_check(names: str) -> int:
    """STUDIO_BUNDLE_IMPORT=mod1,mod2: import each and print the full traceback of a failure
    (a bundle misses modules that are imported lazily; this names the one)."""
    import importlib
    import traceback

    failed = 0
    for name in filter(None, names.split(",")):
        try:
            importlib.import_module(name)
            print(f"ok {name}")
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    if os.environ.get("STUDIO_BUNDLE_IMPORT"):
        sys.exit(_import_check(os.environ["STUDIO_BUNDLE_IMPORT"]))
    sys.exit(main())
