"""The bundle's entry point: ``studio`` as pip installs it (the window with no command)."""

import multiprocessing
import sys

from studio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
