"""The staging area's state without widgets: browse, keep, discard, what is still coming."""

from __future__ import annotations

import numpy as np

from studio.core.jobs.request import GenerationRequest
from studio.session.staging import Candidate, Staging, candidate_caption


def _candidate(seed: int, **kw) -> Candidate:
    req = GenerationRequest(prompt="p", model="m", seed=seed, width=8, height=8, **kw)
    return Candidate(f"r{seed}", 0, np.zeros((8, 8, 3), np.uint8), (0, 0, 8, 8), req)


def test_browse_keep_and_discard_in_order():
    staging = Staging()
    kept, discarded = [], []
    staging.kept.connect(kept.extend)
    staging.discarded.connect(discarded.extend)
    staging.expect(3)
    assert staging.active and staging.shown is None
    for seed in (1, 2, 3):
        staging.add(_candidate(seed))
        staging.arrived(1)
    assert staging.expected == 0 and staging.shown.seed == 1
    assert staging.step(-1) and staging.shown.seed == 3  # wraps
    assert staging.keep().seed == 3
    assert staging.shown.seed == 2  # the one before it moved up: the last is shown
    assert staging.select(0) and staging.discard().seed == 1
    assert [c.seed for c in staging.keep_all()] == [2]
    assert [c.seed for c in kept] == [3, 2] and [c.seed for c in discarded] == [1]
    assert not staging.active and staging.keep() is None


def test_captions_name_the_variation_seed_of_each_image():
    req = GenerationRequest(prompt="p", model="m", seed=7, width=8, height=8,
                            variation_seed=100, variation_strength=0.25, batch_size=2)
    assert candidate_caption(req, 0) == "txt2img · seed 7 · var 100"
    assert candidate_caption(req, 1, "outpaint") == "outpaint · seed 8 · var 101"
    assert candidate_caption(req.replace(variation_strength=0.0)) == "txt2img · seed 7"
