"""Plain descriptions of models and devices, shared by the engine, the UI and the CLI.

The engine protocol that returns them is ``studio.core.engines.Engine``.
"""

from __future__ import annotations

from dataclasses import dataclass

# What a model file or folder is, as the user would say it.
KINDS = ("diffusion", "lora", "vae", "gan", "classifier", "upscaler")


@dataclass(frozen=True)
class ModelInfo:
    """One model found on disk (or in the Hugging Face cache)."""

    id: str  # what a request names: "studio-tiny-diffusion", a path, or a hub repo id
    name: str
    kind: str  # one of KINDS
    family: str  # "sd1", "sd2", "sd2-v", "sdxl", "sd1-lcm", "sdxl-turbo", "pixart", "sd3", ...
    source: str  # "embedded", "diffusers", "hf-cache", "single-file", "folder"
    path: str
    size_bytes: int = 0
    recommended: tuple[tuple[str, object], ...] = ()  # e.g. (("steps", 20), ("width", 64))

    @property
    def size_text(self) -> str:
        size = float(self.size_bytes)
        for unit in ("B", "KB", "MB", "GB"):
            if size < 1024 or unit == "GB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
        return ""

    def recommended_value(self, key: str, default: object = None) -> object:
        return dict(self.recommended).get(key, default)


@dataclass(frozen=True)
class DeviceInfo:
    """Where generations run and in which precision, with the reason for the choice."""

    device: str  # "cuda:0", "mps", "cpu"
    dtype: str  # "float16", "bfloat16", "float32"
    autocast: bool  # CPU bf16 autocast over fp32 weights
    description: str  # e.g. "CPU (bf16 autocast: AMX)"

    @property
    def label(self) -> str:
        precision = f"{self.dtype} autocast" if self.autocast else self.dtype
        return f"{self.device} · {precision}"
