"""Sampler names: ours follow AUTOMATIC1111 ("Euler a", "DPM++ 2M Karras"); other tools differ.

ComfyUI and Fooocus write k-diffusion style names (``dpmpp_2m`` plus a separate scheduler such
as ``karras``), InvokeAI its own (``dpmpp_2m_k``), NovelAI and old InvokeAI ``k_euler_ancestral``.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "plms": "PLMS",
    "pndm": "PNDM",
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
# Align Your Steps runs as Karras (both crowd the steps at low noise) and poly-exponential
# as exponential (its default rho of 1 is the exponential schedule).
_SCHEDULES = {"karras": "Karras", "exponential": "Exponential",
              "polyexponential": "Exponential", "alignyoursteps": "Karras", "ays": "Karras"}
# Schedules that only space the same sigmas differently (Forge's Uniform, SGM Uniform, Simple,
# Normal, DDIM, Beta, KL Optimal, Turbo...): they run as the model's own timestep spacing.
_AUTOMATIC = {"", "automatic", "default"}

_DISPLAY = {name.lower(): name for name in _BASE.values()}


def _parse(name: str, schedule: str) -> tuple[str, str] | None:
    """(A1111 base sampler name, schedule word or "") for a name another tool wrote."""
    raw = name.strip()
    if "/" in raw:  # Forge's "Euler / Exponential"
        raw, _, schedule = (part.strip() for part in raw.partition("/"))
    key = raw.lower()
    suffix = _SCHEDULES.get(schedule.strip().lower().replace(" ", "").replace("_", ""), "")
    for word in dict.fromkeys(_SCHEDULES.values()):
        if key.endswith(" " + word.lower()) and key[: -len(word) - 1] in _DISPLAY:
            return _DISPLAY[key[: -len(word) - 1]], word
    if key in _DISPLAY:
        return _DISPLAY[key], suffix
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
    return _BASE[key], suffix


def to_scheduler(name: str, schedule: str = "") -> str | None:
    """Our scheduler name for a sampler name written by another tool, or ``None``.

    Every A1111/Forge sampler runs as one of ours; a schedule our engine does not pair with
    that sampler runs as the sampler's own (``import_note`` says so).

    Parameters
    ----------
    name
        The sampler as the tool wrote it: ``"Euler a"``, ``"dpmpp_2m_sde_gpu"``,
        ``"k_euler_ancestral"``, ``"dpmpp_2m_k"``, ``"DPM++ 2M Karras"``,
        ``"Euler / Exponential"``.
    schedule
        A separate noise schedule if the tool writes one (ComfyUI ``karras``, A1111
        ``Schedule type: Karras``); schedules that do not change the name are ignored.
    """
    parsed = _parse(name, schedule)
    if parsed is None:
        return None
    base, word = parsed
    paired = f"{base} {word}".strip()
    return paired if paired in SCHEDULER_NAMES else base


def import_note(name: str, schedule: str = "") -> str:
    """One line on how a foreign sampler runs here when not exactly ("" when exact or unknown).

    ``"Euler a"`` with schedule ``"Karras"`` runs as Euler a; ``"Restart"`` as Heun on Karras
    sigmas; a spacing-only schedule such as ``"SGM Uniform"`` as the model's own spacing.
    """
    ours = to_scheduler(name, schedule)
    if ours is None:
        return ""
    parsed = _parse(name, schedule)
    notes = []
    written = f"{name.strip()} / {schedule.strip()}" if schedule.strip() else name.strip()
    raw_schedule = schedule.strip()
    if "/" in name:
        raw_schedule = name.partition("/")[2].strip()
    squashed = raw_schedule.lower().replace(" ", "").replace("_", "")
    if parsed is not None and parsed[1] and not ours.endswith(parsed[1]):
        notes.append(f"the {raw_schedule or parsed[1]} schedule is not available with {ours}")
    elif squashed in ("alignyoursteps", "ays"):
        notes.append("Align Your Steps runs as Karras sigmas")
    elif squashed not in _AUTOMATIC and squashed not in _SCHEDULES:
        notes.append(f"the {raw_schedule} schedule runs as the model's own timestep spacing")
    if ours in SCHEDULER_APPROXIMATIONS:
        notes.append(SCHEDULER_APPROXIMATIONS[ours])
    if not notes:
        return ""
    if notes[0] == SCHEDULER_APPROXIMATIONS.get(ours) and ours == written:
        return f"sampler {written!r} {notes[0]}"
    return f"sampler {written!r} runs as {ours}: {'; '.join(notes)}"


def split_schedule(scheduler: str) -> tuple[str, str]:
    """Split ``"DPM++ 2M Karras"`` into A1111's ``("DPM++ 2M", "Karras")``."""
    for word in _SCHEDULES.values():
        if scheduler.endswith(" " + word):
            return scheduler[: -len(word) - 1], word
    return scheduler, ""


# -- the engine's scheduler names ---------------------------------------------------------
# The names a request may carry, in the order the CLI and the GUI list them (grouped by
# family: Euler and the classic k-samplers, DPM, DPM++, the DDPM-era solvers, few-step
# distilled, flow matching). Every A1111/Forge sampler name is one of them. The local engine
# (studio.engine.schedulers) maps each to a diffusers configuration; this table is here,
# without torch, so that a command line checks a name before any heavy import.
SCHEDULER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Euler", ("Euler", "Euler a", "Euler Karras", "Euler Exponential", "Heun", "Restart",
               "LMS", "LMS Karras")),
    ("DPM", ("DPM2", "DPM2 a", "DPM2 Karras", "DPM2 a Karras", "DPM fast", "DPM adaptive")),
    ("DPM++", ("DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras",
               "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "DPM++ 3M SDE Karras",
               "DPM++ 3M SDE Exponential", "DPM++ SDE", "DPM++ SDE Karras", "DPM++ 2S a",
               "DPM++ 2S a Karras")),
    ("Classic", ("DDIM", "DDPM", "PLMS", "PNDM", "UniPC", "DEIS")),
    ("Few-step", ("LCM", "TCD")),
    ("Flow matching", ("Flow Euler",)),
)
SCHEDULER_NAMES: tuple[str, ...] = tuple(n for _, names in SCHEDULER_GROUPS for n in names)

# Where our configuration is not the A1111/Forge sampler of that name, what it runs instead.
SCHEDULER_APPROXIMATIONS: dict[str, str] = {
    "Restart": "runs as Heun on Karras sigmas, without Restart's back-and-forth noise",
    "DPM fast": "runs as DPM-Solver 3S (third order, single step) at the steps asked; "
                "A1111's DPM fast picks its own orders",
    "DPM adaptive": "runs as DPM-Solver++ 3S at the steps asked; A1111's adaptive step "
                    "size (which ignores the step count) is not available",
    "DPM++ SDE": "runs as the deterministic DPM-Solver++ 2S (single step); diffusers' "
                 "stochastic DPM++ SDE needs the torchsde package",
    "DPM++ SDE Karras": "runs as DPM-Solver++ 2S (single step) on Karras sigmas, "
                        "deterministic (see DPM++ SDE)",
    "DPM++ 2S a": "runs as the SDE variant of DPM-Solver++ 2S (fresh noise each step) "
                  "instead of ancestral sampling",
    "DPM++ 2S a Karras": "runs as the SDE variant of DPM-Solver++ 2S on Karras sigmas "
                         "instead of ancestral sampling",
}

# The fewest steps at which a scheduler follows the prompt (hair and background colour read
# by studio.core.portraits.oracle on the embedded model, tests/engine/test_sampler_quality.py);
# the others do from 4 steps. The few-step samplers LCM and TCD are made for 1 to 8.
# The DPM-Solver Karras/exponential ones draw their sigmas over the model's spaced range
# (studio.engine.schedulers). Measured on the retrained embedded model (6 images: 2 prompts x
# seeds 1-3, wrong readings at 4/5/6/7/8 steps): DPM++ 2M SDE Heun 1/0/0/0/0, DPM++ 3M SDE
# Exponential 1/1/0/1/0, DPM++ 3M SDE Karras 4/4/0/2/0, DPM2 5/2/1/0/0, DPM2 Karras
# 5/1/0/0/0, DPM2 a Karras 6/6/5/3/1 (0 at 10), DPM++ 2M Karras 2/0/0/0/0, DPM++ 2M SDE
# Karras 4/2/0/0/0. A minimum is the fewest steps from which every count reads right.
SCHEDULER_MIN_STEPS: dict[str, int] = {
    "Heun": 5, "Restart": 5, "DPM2": 7, "DPM2 a": 8, "DPM2 Karras": 6, "DPM2 a Karras": 10,
    "LMS": 10, "LMS Karras": 20, "DPM++ 2M Karras": 6, "DPM++ 2M SDE Karras": 6,
    "DPM++ 2M SDE Heun": 5, "DPM++ 3M SDE Karras": 8, "DPM++ 3M SDE Exponential": 8,
    "PNDM": 20, "PLMS": 30,
}


# The fewest steps a scheduler can run at all (below, diffusers fails): PNDM's pseudo
# Runge-Kutta warm-up takes the first steps' worth of model calls.
SCHEDULER_LEAST_STEPS: dict[str, int] = {"PNDM": 4}


def steps_refusal(name: str, steps: int) -> str:
    """One line when scheduler ``name`` (our name) cannot run ``steps`` steps at all, else ""."""
    least = SCHEDULER_LEAST_STEPS.get(name, 0)
    if steps >= least:
        return ""
    return (f"{name} cannot run fewer than {least} steps (its warm-up needs them; asked: "
            f"{steps}); use PLMS, the same sampler without the warm-up.")


def scheduler_note(name: str) -> str:
    """What a user should know about scheduler ``name`` (our name): how it differs from the
    A1111 sampler of that name and the fewest steps it is good for; "" when nothing."""
    parts = []
    if name in SCHEDULER_APPROXIMATIONS:
        parts.append(f"Approximation: {SCHEDULER_APPROXIMATIONS[name]}.")
    if name in SCHEDULER_MIN_STEPS:
        parts.append(f"Needs at least {SCHEDULER_MIN_STEPS[name]} steps.")
    return " ".join(parts)


def steps_warning(name: str, steps: int) -> str:
    """One line when ``steps`` is too few for scheduler ``name`` (our name), else ""."""
    least = SCHEDULER_MIN_STEPS.get(name, 0)
    if steps >= least:
        return ""
    return (f"{name} does not follow the prompt below {least} steps (asked: {steps}); "
            f"use more steps or another sampler (Euler, DPM++ 2M, UniPC).")


def fast_setting(recommended: Mapping[str, object], steps: int, scheduler: str,
                 guidance: float) -> tuple[str, float] | None:
    """The (sampler, guidance) a model's card recommends for few steps (``fast_steps``,
    ``fast_scheduler`` and ``fast_guidance`` in its studio.json "recommended") where
    ``steps`` are that few and the request uses another sampler or guidance; else None."""
    from studio.core.errors import InvalidRequestError

    try:
        most = int(recommended["fast_steps"])  # type: ignore[call-overload]
        name = scheduler_name(str(recommended["fast_scheduler"]))
        cfg = float(recommended["fast_guidance"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, InvalidRequestError):
        return None
    if steps > most or (scheduler == name and abs(guidance - cfg) < 1e-6):
        return None
    return name, cfg


def fast_setting_note(recommended: Mapping[str, object], steps: int, scheduler: str,
                      guidance: float) -> str:
    """One line naming ``fast_setting``'s sampler and guidance ("" when there is none)."""
    fast = fast_setting(recommended, steps, scheduler, guidance)
    if fast is None:
        return ""
    return (f"At {steps} steps this model follows the prompt best with {fast[0]} at guidance "
            f"{fast[1]:g} (its card's fast setting).")


# diffusers class names (as a model's scheduler_config.json or studio.json names them) whose
# default configuration is one of ours.
SCHEDULER_CLASSES: dict[str, str] = {
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun", "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2", "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverMultistepScheduler": "DPM++ 2M", "DPMSolverSinglestepScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM", "DDPMScheduler": "DDPM", "PNDMScheduler": "PLMS",
    "UniPCMultistepScheduler": "UniPC", "DEISMultistepScheduler": "DEIS",
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
