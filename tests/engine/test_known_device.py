"""During the engine's own calls the pipeline's execution device is told, not searched for
(``studio.engine.known_device``): diffusers looks through every module of every component
for offloading hooks each time it is read, 12-16 ms on the embedded model under load."""

from __future__ import annotations

import numpy as np

from studio.core.jobs.request import GenerationRequest


def test_a_generation_does_not_search_the_modules_for_the_device(engine, tiny_sd1_dir,
                                                                 monkeypatch):
    import diffusers.hooks.group_offloading as offloading

    searched = []
    original = offloading._get_group_onload_device

    def counting(module):
        searched.append(type(module).__name__)
        return original(module)

    monkeypatch.setattr(offloading, "_get_group_onload_device", counting)
    req = GenerationRequest("a red square", model=str(tiny_sd1_dir), width=64, height=64,
                            steps=2, seed=1)
    image = engine.generate(req).images[0]
    assert searched == []
    again = engine.generate(req).images[0]
    assert np.array_equal(image, again)
    pipe = engine.load(str(tiny_sd1_dir)).pipe
    assert str(pipe._execution_device) == "cpu" and searched  # outside a call: diffusers' own
