"""Sampler names: ours follow AUTOMATIC1111 ("Euler a", "DPM++ 2M Karras"); other tools differ.

ComfyUI and Fooocus write k-diffusion style names (``dpmpp_2m`` plus a separate scheduler such
as ``karras``), InvokeAI its own (``dpmpp_2m_k``), NovelAI and old InvokeAI ``k_euler_ancestral``.
"""

from __future__ import annotations

# k-diffusion style base name -> A1111 display name.
_BASE = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "plms": "PLMS",
    "pndm": "PLMS",
    "uni_pc": "UniPC",
    "deis": "DEIS",
    "lcm": "LCM",
    "tcd": "TCD",
    "restart": "Restart",
}

# Other spellings of the base names (InvokeAI, NovelAI, older ComfyUI).
_ALIASES = {
    "euler_a": "euler_ancestral",
    "dpm_2_a": "dpm_2_ancestral",
    "kdpm_2": "dpm_2",
    "kdpm_2_a": "dpm_2_ancestral",
    "dpmpp_2s": "dpmpp_2s_ancestral",
    "dpmpp_2s_a": "dpmpp_2s_ancestral",
    "dpmpp_2m_sde_2": "dpmpp_2m_sde",
    "unipc": "uni_pc",
    "uni_pc_bh2": "uni_pc",
    "ddim_v3": "ddim",
}

# Schedules that change which sigmas are used; A1111 shows them after the sampler name.
_SCHEDULES = {"karras": "Karras", "exponential": "Exponential", "polyexponential": "Polyexponential"}

_DISPLAY = {name.lower(): name for name in _BASE.values()}


def to_scheduler(name: str, schedule: str = "") -> str | None:
    """Our scheduler name for a sampler name written by another tool, or ``None``.

    Parameters
    ----------
    name
        The sampler as the tool wrote it: ``"Euler a"``, ``"dpmpp_2m_sde_gpu"``,
        ``"k_euler_ancestral"``, ``"dpmpp_2m_k"``, ``"DPM++ 2M Karras"``.
    schedule
        A separate noise schedule if the tool writes one (ComfyUI ``karras``, A1111
        ``Schedule type: Karras``); schedules that do not change the name are ignored.
    """
    raw = name.strip()
    key = raw.lower()
    suffix = _SCHEDULES.get(schedule.strip().lower().replace(" ", ""), "")
    for word in _SCHEDULES.values():
        if key.endswith(" " + word.lower()) and key[: -len(word) - 1] in _DISPLAY:
            return f"{_DISPLAY[key[: -len(word) - 1]]} {word}"
    if key in _DISPLAY:
        return f"{_DISPLAY[key]} {suffix}".strip()
    key = key.replace(" ", "_").replace("-", "_").replace("+", "p")
    for prefix in ("sample_", "k_"):
        key = key.removeprefix(prefix)
    key = key.removesuffix("_gpu")
    for ending, word in (("_karras", "Karras"), ("_k", "Karras"), ("_exponential", "Exponential")):
        if key.endswith(ending) and key[: -len(ending)] in (_BASE.keys() | _ALIASES.keys()):
            key, suffix = key[: -len(ending)], word
            break
    key = _ALIASES.get(key, key)
    if key not in _BASE:
        return None
    return f"{_BASE[key]} {suffix}".strip()


def split_schedule(scheduler: str) -> tuple[str, str]:
    """Split ``"DPM++ 2M Karras"`` into A1111's ``("DPM++ 2M", "Karras")``."""
    for word in _SCHEDULES.values():
        if scheduler.endswith(" " + word):
            return scheduler[: -len(word) - 1], word
    return scheduler, ""


# -- the engine's scheduler names ---------------------------------------------------------
# The names a request may carry, in the order the CLI and the GUI list them. The local
# engine (studio.engine.schedulers) maps each to a diffusers configuration; this table is
# here, without torch, so that a command line checks a name before any heavy import.
SCHEDULER_NAMES: tuple[str, ...] = (
    "Euler", "Euler a", "Euler Karras", "Heun", "LMS", "LMS Karras", "DPM2", "DPM2 a",
    "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DPM++ SDE",
    "DDIM", "PNDM", "UniPC", "LCM", "TCD", "Flow Euler",
)

# diffusers class names (as a model's scheduler_config.json or studio.json names them) whose
# default configuration is one of ours.
SCHEDULER_CLASSES: dict[str, str] = {
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun", "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2", "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverMultistepScheduler": "DPM++ 2M", "DPMSolverSinglestepScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM", "PNDMScheduler": "PNDM", "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM", "TCDScheduler": "TCD",
    "FlowMatchEulerDiscreteScheduler": "Flow Euler",
}


def _squash(name: str) -> str:
    return name.strip().lower().replace(" ", "").replace("+", "p")


SCHEDULER_ALIASES: dict[str, str] = {_squash(name): name for name in SCHEDULER_NAMES}
SCHEDULER_ALIASES.update({
    "euler_a": "Euler a", "euler_ancestral": "Euler a", "k_euler_a": "Euler a",
    "k_euler": "Euler", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras",
    "dpm++2mkarras": "DPM++ 2M Karras", "unipc": "UniPC", "ddim": "DDIM", "lcm": "LCM",
})


def scheduler_name(name: str) -> str:
    """Our scheduler name for one written any common way ("euler_a", "DPM++ 2M Karras",
    a diffusers class name).

    Raises
    ------
    InvalidRequestError
        The name is none of ``SCHEDULER_NAMES`` (the message lists them).
    """
    from studio.core.errors import InvalidRequestError

    if name in SCHEDULER_NAMES:
        return name
    found = (SCHEDULER_CLASSES.get(name.strip()) or SCHEDULER_ALIASES.get(_squash(name))
             or SCHEDULER_ALIASES.get(name.strip().lower()))
    if found is None:
        raise InvalidRequestError(
            f"Unknown scheduler {name!r}. Choose one of: {', '.join(SCHEDULER_NAMES)}.")
    return found
