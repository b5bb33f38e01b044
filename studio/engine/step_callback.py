"""``StepCallback``: what runs after every denoising step (diffusers' ``callback_on_step_end``).

In order: the cancel check (a cancelled job stops within one step and never reaches the VAE
decode), prompt directions that start late, the local sliders' blend with the base
generation, and the progress report with a small preview every few steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import StepProgress
from studio.engine.models.families import SDXL_FAMILIES
from studio.engine.sliders import LocalBlend, ScheduledDelta, late_delta_callback


class StepCallback:
    """The per-step work of one pipeline call.

    Parameters
    ----------
    on_step
        Gets a ``StepProgress`` after every step.
    cancel
        Checked first at every step (raises ``CancelledError``).
    steps
        The requested steps (the total when the pipeline does not say its own).
    previewer
        Latents -> a small uint8 preview; ``None`` or ``preview_every`` 0: no previews.
    preview_every
        A preview every this many steps, and after the last.
    late
        Prompt directions that join the embeddings after their start step.
    blend
        The local sliders' blend with the base generation (``None``: none); may be set after
        the callback is built and before the call runs.
    """

    def __init__(self, on_step: Callable[[StepProgress], None], cancel: CancelToken, steps: int,
                 previewer: Callable[[Any], Any] | None = None, preview_every: int = 0,
                 late: Sequence[ScheduledDelta] = (), blend: LocalBlend | None = None) -> None:
        self.on_step = on_step
        self.cancel = cancel
        self.steps = steps
        self.previewer = previewer
        self.preview_every = preview_every if previewer is not None else 0
        self.late = tuple(late)
        self.blend = blend
        self._late_update = late_delta_callback(list(self.late)) if self.late else None

    def __call__(self, pipe: Any, step: int, timestep: Any,
                 cb: dict[str, Any]) -> dict[str, Any]:
        self.cancel.raise_if_cancelled()
        if self._late_update is not None:
            self._late_update(pipe, step, cb)
        if self.blend is not None and cb.get("latents") is not None:
            cb["latents"] = self.blend.apply(step, cb["latents"])
        total = int(getattr(pipe, "num_timesteps", 0) or self.steps)
        preview = None
        latents = cb.get("latents")
        every = self.preview_every
        if every and latents is not None and ((step + 1) % every == 0 or step + 1 == total):
            assert self.previewer is not None
            preview = self.previewer(latents)
        self.on_step(StepProgress(step + 1, total, preview))
        if step + 1 == total:  # the pipeline decodes the latents next
            self.on_step(StepProgress(total, total, phase="decoding"))
        return cb

    def tensor_inputs(self, pipe: Any, family: str) -> list[str]:
        """The tensors the pipeline must hand this callback at each step."""
        names = ["latents"]
        if self.late:  # prompt directions that start after the first steps
            extra = ["prompt_embeds"] + (["add_text_embeds"] if family in SDXL_FAMILIES
                                         else ["pooled_prompt_embeds"])  # SD3's pooled text
            names += [k for k in extra if k in getattr(pipe, "_callback_tensor_inputs", [])]
        return names

    def kwargs(self, pipe: Any, family: str) -> dict[str, Any]:
        """The pipeline arguments that install this callback: ``callback_on_step_end``, or
        the older ``callback(step, timestep, latents)`` every step where a pipeline has only
        that (PixArt): progress, previews and cancel then work the same."""
        import inspect

        params = inspect.signature(type(pipe).__call__).parameters
        if "callback_on_step_end" not in params and "callback" in params:
            def legacy(step: int, timestep: Any, latents: Any) -> None:
                self(pipe, step, timestep, {"latents": latents})

            return {"callback": legacy, "callback_steps": 1}
        return {"callback_on_step_end": self,
                "callback_on_step_end_tensor_inputs": self.tensor_inputs(pipe, family)}
