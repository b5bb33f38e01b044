"""Hypothesis settings for the fuzz tests: a fixed seed and a small budget by default.

The default run (CI, ``pytest tests/fuzz``) tries ``DEFAULT_EXAMPLES`` inputs per test,
derandomized, so it is the same every time and takes seconds. For a long run by hand,
raise the budget and let Hypothesis pick new inputs each time::

    STUDIO_FUZZ_EXAMPLES=200000 STUDIO_FUZZ_RANDOM=1 timeout 3600 \\
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/fuzz -x

(an hour: the run ends at the ``timeout``; ``-x`` stops at the first failure, which
Hypothesis prints shrunk to a small reproducing input, with the ``@reproduce_failure``
line to paste.)
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 50

settings.register_profile(
    "studio-fuzz",
    max_examples=int(os.environ.get("STUDIO_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)),
    derandomize=os.environ.get("STUDIO_FUZZ_RANDOM", "") not in ("1", "true", "yes"),
    deadline=None,
    database=None,  # no .hypothesis folder in the tree; failures print their reproducer
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile("studio-fuzz")
