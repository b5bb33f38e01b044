"""``SliderEdits``: the prompt conditioning of a request with its slider edits, and their caches.

Prompt sliders add embedding directions (from the first step, or late); the A<->B slider
interpolates two prompts' embeddings; local sliders blend with a base generation outside
where their words act; sliders over an imported image start from its DDIM inversion. Every
costly piece (embeddings, directions, inversions, base trajectories) is cached per model and
everything that shapes it, so a slider drag recomputes only what moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from studio.core.jobs.request import GenerationRequest, SliderValue
from studio.core.sliders.specs import fill_template, place_in_prompt, prompt_end
from studio.engine.conditioning import Conditioning, ConditioningCache, encode_prompts
from studio.engine.device import DeviceChoice
from studio.engine.lora import lora_signature
from studio.engine.models.loading import LoadedModel
from studio.engine.sliders import (
    DirectionCache,
    InversionCache,
    LocalBlend,
    PromptDelta,
    ScheduledDelta,
    TrajectoryCache,
    add_deltas,
    compute_prompt_delta,
    ddim_invert,
    edit_mask,
    interp_slider,
    lerp_conditioning,
    prompt_sliders,
    schedule,
    travel,
    without_sliders,
)


class SliderEdits:
    """Conditioning with slider edits for one engine's device, and the caches behind it.

    Parameters
    ----------
    choice
        The engine's device and dtypes (encodings run on it, under its autocast).
    """

    def __init__(self, choice: DeviceChoice) -> None:
        self.choice = choice
        self.conditionings = ConditioningCache()
        self.directions = DirectionCache()
        self.inversions = InversionCache()
        self.trajectories = TrajectoryCache()  # base generations of local sliders

    def clear(self) -> None:
        """Forget every cached embedding, direction, inversion and trajectory."""
        for cache in (self.conditionings, self.directions, self.inversions, self.trajectories):
            cache.clear()

    def conditioning(self, loaded: LoadedModel, req: GenerationRequest) -> Conditioning:
        """The prompt embeddings for ``req`` (cached per model and prompt)."""
        import torch

        key = (loaded.hash, loaded.info.path, req.prompt, req.negative_prompt, req.clip_skip,
               lora_signature(req.loras))

        def make() -> Conditioning:
            with torch.inference_mode(), loaded.choice.autocast():
                return encode_prompts(loaded.pipe, loaded.family, req,
                                      self.choice.torch_device())

        return self.conditionings.get_or_make(key, make)

    def text_args(self, loaded: LoadedModel, req: GenerationRequest
                  ) -> tuple[dict[str, Any], list[ScheduledDelta]]:
        """The embeddings' pipeline arguments with the sliders' directions that start at the
        first step, and the directions that start later (for the step callback)."""
        cond = self.conditioning(loaded, req).kwargs
        interp = interp_slider(req)
        prompt_b = dict(interp.payload).get("prompt_b") if interp is not None else None
        if interp is not None and prompt_b is not None and prompt_b != req.prompt:
            other = self.conditioning(loaded, req.replace(prompt=str(prompt_b))).kwargs
            cond = lerp_conditioning(cond, other, float(interp.value))
        deltas = schedule([(d, self.travel(d, s), float(dict(s.payload).get("start", 0.0)))
                           for s in prompt_sliders(req)
                           for d in [self.prompt_delta(loaded, req, s)]], req.steps)
        cond = add_deltas(cond, [d for d in deltas if d.start_step == 0])
        return dict(cond), [d for d in deltas if d.start_step > 0]

    @staticmethod
    def travel(delta: PromptDelta, slider: SliderValue) -> float:
        """The multiple of ``delta`` that ``slider`` adds (its value, shortened past the end
        the prompt already says by the spec's ``beyond``)."""
        return travel(delta, slider.value, float(dict(slider.payload).get("beyond", 1.0)))

    def prompt_delta(self, loaded: LoadedModel, req: GenerationRequest,
                     slider: SliderValue) -> PromptDelta:
        """The embedding direction of a prompt slider (cached per model, LoRAs and texts)."""
        import torch

        p = dict(slider.payload)
        templates = [t for t in str(p.get("templates", "{}")).split("\n") if t.strip()]
        if p.get("context") == "prompt":
            in_prompt = self._in_prompt_delta(loaded, req, p, templates)
            if in_prompt is not None:
                return in_prompt
        key = (loaded.hash, loaded.info.path, str(p.get("positive", "")),
               str(p.get("negative", "")), tuple(templates), req.clip_skip,
               lora_signature(req.loras))

        def make() -> PromptDelta:
            with loaded.choice.autocast():
                return compute_prompt_delta(loaded.pipe, loaded.family, key[2], key[3],
                                            templates, self.choice.torch_device(),
                                            req.clip_skip)

        with torch.inference_mode():
            return self.directions.get_or_make(key, make)

    def _in_prompt_delta(self, loaded: LoadedModel, req: GenerationRequest,
                         payload: dict[str, Any], templates: list[str]) -> PromptDelta | None:
        """``E(prompt with positive) - E(prompt with negative)``, encoded exactly as the
        prompt is (weights, chunks, clip skip, LoRA tags), or None where the words have no
        place in the prompt (see ``studio.core.sliders.specs.place_in_prompt``)."""
        def lines(key: str) -> list[str]:
            return [a for a in str(payload.get(key, "")).split("\n") if a.strip()]

        placed = place_in_prompt(req.prompt, str(payload.get("positive", "")),
                                 str(payload.get("negative", "")), lines("alternatives"),
                                 templates, lines("synonyms"))
        if placed is None:
            return None
        template, positive, negative = placed
        pos = self.conditioning(loaded, req.replace(prompt=fill_template(template, positive)))
        neg = self.conditioning(loaded, req.replace(prompt=fill_template(template, negative)))
        a, b = pos.kwargs, neg.kwargs
        own = self.conditioning(loaded, req).kwargs["prompt_embeds"].shape
        if not a["prompt_embeds"].shape == b["prompt_embeds"].shape == own:
            return None  # the texts fill different numbers of 75-token chunks
        pooled = None
        # The slider reaches the swapped prompt at value ``reach`` (2: the end of its travel).
        scale = 1.0 / max(1e-3, float(payload.get("reach", 1.0)))
        tokens = (a["prompt_embeds"] - b["prompt_embeds"]) * scale
        if "pooled_prompt_embeds" in a and "pooled_prompt_embeds" in b:
            pooled = (a["pooled_prompt_embeds"] - b["pooled_prompt_embeds"]) * scale
        return PromptDelta(tokens, pooled, prompt_end(req.prompt, template, positive, negative))

    def inverted_latents(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest) -> Any:
        """The DDIM inversion of the init image under the prompt (cached for drags)."""
        from PIL import Image

        assert req.init_image is not None
        key = (loaded.hash, loaded.info.path, req.init_image.sha256, req.prompt, req.steps,
               req.width, req.height, req.clip_skip, lora_signature(req.loras))

        def make() -> Any:
            image = Image.fromarray(req.init_image.to_array()).convert("RGB")
            if image.size != (req.width, req.height):
                image = image.resize((req.width, req.height), Image.LANCZOS)
            cond = self.conditioning(loaded, req).kwargs
            with loaded.choice.autocast():
                return ddim_invert(pipe, np.asarray(image), cond["prompt_embeds"], req.steps,
                                   self.choice.torch_device(), loaded.choice.torch_dtype(),
                                   pooled_prompt_embeds=cond.get("pooled_prompt_embeds"))

        return self.inversions.get_or_make(key, make).repeat(req.batch_size, 1, 1, 1)

    def local_blend(self, pipe: Any, loaded: LoadedModel, req: GenerationRequest,
                    local: list[SliderValue], base_kwargs: dict[str, Any]) -> LocalBlend | None:
        """The base generation's trajectory (run once per base, cached) and the mask of
        where the ``local`` sliders' words act (see ``studio.engine.sliders.edit_mask``);
        None where the denoiser cannot score plain latents."""
        import torch

        base = without_sliders(req, local)
        key = (loaded.hash, loaded.info.path, base.to_json())

        def run_base() -> tuple[Any, ...]:
            steps: list[Any] = []
            callback = base_kwargs["callback_on_step_end"]

            def capture(p: Any, step: int, timestep: Any, cb: dict[str, Any]) -> dict[str, Any]:
                cb = callback(p, step, timestep, cb)
                steps.append(cb["latents"].clone())
                return cb

            pipe(**{**base_kwargs, "output_type": "latent", "callback_on_step_end": capture})
            return tuple(steps)

        trajectory = self.trajectories.get_or_make(key, run_base)
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        if not trajectory or denoiser.config.in_channels != trajectory[-1].shape[1]:
            return None  # a denoiser that takes more than the latents cannot score them
        deltas = [self.prompt_delta(loaded, req, s) for s in local]
        tokens = sum(self.travel(d, s) * d.tokens for s, d in zip(local, deltas, strict=True))
        pooled = None
        if all(d.pooled is not None for d in deltas):
            pooled = sum(self.travel(d, s) * d.pooled
                         for s, d in zip(local, deltas, strict=True))
        cond = self.conditioning(loaded, req).kwargs
        with torch.inference_mode():
            mask = edit_mask(pipe, trajectory[-1], cond["prompt_embeds"],
                             PromptDelta(tokens, pooled), req.seed,
                             pooled_prompt_embeds=cond.get("pooled_prompt_embeds"),
                             size=(req.height, req.width))
        return LocalBlend(trajectory, mask)
