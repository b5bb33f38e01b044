"""Schedulers by the names artists know (A1111's), built from the model's own config."""

from __future__ import annotations

from typing import Any

from studio.core.errors import InvalidRequestError
from studio.core.samplers import SCHEDULER_ALIASES, scheduler_name

# name -> (diffusers class, extra config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler Karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
    "Flow Euler": ("FlowMatchEulerDiscreteScheduler", {}),
}

# The names (and their spellings) live in core, so that a command line checks a name without
# torch; this module maps each name to a diffusers configuration.
ALIASES = SCHEDULER_ALIASES


def canonical_name(name: str) -> str:
    """Our name for a scheduler written any common way ("euler_a", "DPM++ 2M Karras")."""
    return scheduler_name(name)


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A fresh scheduler of the named kind, keeping the model's training schedule."""
    import diffusers

    cls_name, extra = SCHEDULERS[canonical_name(name)]
    cls = getattr(diffusers, cls_name)
    base_cls = str(base_config.get("_class_name", ""))
    flow_model = base_cls.startswith("FlowMatch")
    if flow_model != cls_name.startswith("FlowMatch"):
        kind = "flow-matching" if flow_model else "diffusion"
        raise InvalidRequestError(
            f"The scheduler {name!r} does not work with this {kind} model; "
            f"try {'Flow Euler' if flow_model else 'Euler'}.")
    config = dict(base_config)
    # Latents are not images in [-1, 1]: diffusers' DDIM/DDPM default of clipping the
    # predicted x0 (made for pixel-space models) wrecks a latent model whose saved config
    # does not say otherwise (hair colour adherence fell from 86 % to 14 % on the tiny model).
    config.setdefault("clip_sample", False)
    config["use_karras_sigmas"] = False
    config.update(extra)
    if cls_name == "DPMSolverMultistepScheduler" and "algorithm_type" not in extra:
        config["algorithm_type"] = "dpmsolver++"
    return cls.from_config(config)
