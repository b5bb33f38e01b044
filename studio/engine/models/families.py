"""Model families, detected from configs (never from file names), and their defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FamilyDefaults:
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str


DEFAULTS: dict[str, FamilyDefaults] = {
    "sd1": FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"),
    "sd2": FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"),
    "sd2-v": FamilyDefaults(768, 768, 25, 7.0, "DPM++ 2M Karras"),
    "sdxl": FamilyDefaults(1024, 1024, 30, 6.0, "DPM++ 2M Karras"),
    "sd1-lcm": FamilyDefaults(512, 512, 4, 1.5, "LCM"),
    "sdxl-lcm": FamilyDefaults(1024, 1024, 4, 1.5, "LCM"),
    "sdxl-turbo": FamilyDefaults(512, 512, 2, 0.0, "Euler a"),
    "sd1-turbo": FamilyDefaults(512, 512, 2, 0.0, "Euler a"),
    "pixart": FamilyDefaults(1024, 1024, 20, 4.5, "DPM++ 2M"),
    "sd3": FamilyDefaults(1024, 1024, 28, 7.0, "Flow Euler"),
    "studio-tiny": FamilyDefaults(64, 64, 20, 5.0, "Euler"),
    "sd1-inpaint": FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"),
    "sd2-inpaint": FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"),
    "sdxl-inpaint": FamilyDefaults(1024, 1024, 30, 6.0, "DPM++ 2M Karras"),
}

# The pipeline classes a family's folder names in model_index.json.
SD_FAMILIES = ("sd1", "sd2", "sd2-v", "sd1-lcm", "sd1-turbo", "studio-tiny", "sd1-inpaint",
               "sd2-inpaint")
SDXL_FAMILIES = ("sdxl", "sdxl-lcm", "sdxl-turbo", "sdxl-inpaint")
# Families whose UNet DDIM inversion can run backwards (sliders over an imported image).
INVERTIBLE_FAMILIES = tuple(f for f in SD_FAMILIES + SDXL_FAMILIES if not f.endswith("-inpaint"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_family(model_index: dict[str, Any], unet: dict[str, Any] | None = None,
                  scheduler: dict[str, Any] | None = None,
                  studio: dict[str, Any] | None = None) -> str:
    """Family of a diffusers pipeline from its ``model_index.json`` and component configs."""
    if studio and studio.get("family"):
        return str(studio["family"])
    cls = str(model_index.get("_class_name", ""))
    if "PixArt" in cls:
        return "pixart"
    if "StableDiffusion3" in cls:
        return "sd3"
    unet = unet or {}
    scheduler = scheduler or {}
    lcm = unet.get("time_cond_proj_dim") is not None or scheduler.get("_class_name") == "LCMScheduler"
    turbo = (scheduler.get("timestep_spacing") == "trailing"
             and scheduler.get("_class_name") == "EulerAncestralDiscreteScheduler")
    if "XL" in cls or unet.get("addition_embed_type") == "text_time":
        base = "sdxl"
    elif _cross_dim(unet) == 1024:
        base = "sd2-v" if scheduler.get("prediction_type") == "v_prediction" else "sd2"
    else:
        base = "sd1"
    if unet.get("in_channels") == 9:
        return f"{base.split('-')[0]}-inpaint"
    if lcm:
        return f"{base.split('-')[0]}-lcm"
    if turbo:
        return f"{base.split('-')[0]}-turbo"
    return base


def _cross_dim(unet: dict[str, Any]) -> int:
    dim = unet.get("cross_attention_dim", 768)
    if isinstance(dim, list | tuple):
        dim = dim[0]
    return int(dim or 0)


def detect_folder_family(folder: Path) -> str:
    """Family of a diffusers folder (raises nothing: unknown folders read as ``sd1``)."""
    return detect_family(
        read_json(folder / "model_index.json"),
        read_json(folder / "unet" / "config.json"),
        read_json(folder / "scheduler" / "scheduler_config.json"),
        read_json(folder / "studio.json"),
    )


def defaults_for(family: str) -> FamilyDefaults:
    return DEFAULTS.get(family, DEFAULTS["sd1"])
