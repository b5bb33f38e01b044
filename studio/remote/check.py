"""The connect check: what a ComfyUI server has, what it lacks, and where each thing goes.

One screen of text, per model family and per feature, before any generation fails on a
missing model or node (the commonest support problem of studios that drive ComfyUI).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.core.errors import StudioError
from studio.remote import workflow as wf
from studio.remote.client import ComfyClient, EventLoopThread, ServerConfig

FOLDERS = ("checkpoints", "loras", "vae", "upscale_models", "controlnet", "diffusion_models",
           "text_encoders", "clip_vision")


@dataclass(frozen=True)
class CheckLine:
    what: str  # "SD 1.x / 2.x / XL", "inpainting", ...
    ok: bool
    detail: str  # what it has, or what is missing and where it goes


@dataclass(frozen=True)
class ServerReport:
    url: str
    version: str
    device: str
    lines: tuple[CheckLine, ...]

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines[:1])

    def text(self) -> str:
        out = [f"{self.url}: ComfyUI {self.version} on {self.device}"]
        width = max(len(line.what) for line in self.lines)
        for line in self.lines:
            mark = "ok     " if line.ok else "missing"
            out.append(f"  {mark}  {line.what.ljust(width)}  {line.detail}")
        return "\n".join(out)


async def check_client(client: ComfyClient) -> ServerReport:
    """Read the server's nodes and model folders and judge them (raises if unreachable)."""
    stats = await client.system_stats()
    info = await client.object_info()
    folders = {name: await client.models(name) for name in FOLDERS}
    system = stats.get("system", {})
    dev = (stats.get("devices") or [{}])[0]
    free = int(dev.get("vram_free", 0) or 0) / 2**30
    device = f"{dev.get('name', '?')} ({free:.1f} GB free)"

    def nodes(feature: str) -> list[str]:
        return [n for n in wf.REQUIRED_NODES[feature] if n not in info]

    def count(folder: str) -> str:
        names = folders[folder]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"{len(names)} in models/{folder}: {shown}"

    lines: list[CheckLine] = []
    missing = nodes("txt2img")
    if missing:
        lines.append(CheckLine("SD 1.x / 2.x / XL", False,
                               f"nodes missing: {', '.join(missing)} (update ComfyUI)"))
    elif not folders["checkpoints"]:
        lines.append(CheckLine("SD 1.x / 2.x / XL", False,
                               "no checkpoint: put a .safetensors checkpoint in "
                               "ComfyUI/models/checkpoints/"))
    else:
        lines.append(CheckLine("SD 1.x / 2.x / XL", True, count("checkpoints")))
    for family, label in (("flux", "Flux"), ("sd3", "SD3")):
        lines.append(_family_line(family, label, nodes(family), folders))
    lines.append(_family_line("qwen-image-edit", "Qwen-Image-Edit",
                              nodes("qwen") + nodes("edit-qwen"), folders))
    for feature, label in (("img2img", "image to image"), ("inpainting", "inpainting")):
        gone = nodes(feature)
        lines.append(CheckLine(label, not gone, "nodes missing: " + ", ".join(gone) if gone
                               else "built-in nodes present"))
    gone = nodes("lora")
    lines.append(CheckLine(
        "LoRA", not gone and bool(folders["loras"]),
        ("nodes missing: " + ", ".join(gone)) if gone else count("loras") if folders["loras"]
        else "no LoRA: put .safetensors LoRAs in ComfyUI/models/loras/"))
    gone = nodes("upscaling")
    lines.append(CheckLine(
        "upscaling", not gone and bool(folders["upscale_models"]),
        ("nodes missing: " + ", ".join(gone)) if gone else count("upscale_models")
        if folders["upscale_models"] else
        "no upscaler: put ESRGAN-style models in ComfyUI/models/upscale_models/"))
    gone = nodes("variation")
    lines.append(CheckLine("variation seeds", not gone, "nodes missing: " + ", ".join(gone)
                           + " (update ComfyUI)" if gone else "built-in nodes present"))
    gone = nodes("hires")
    lines.append(CheckLine(
        "hires fix", not gone, "nodes missing: " + ", ".join(gone) + " (update ComfyUI)" if gone
        else "built-in nodes present; upscales with " + (
            count("upscale_models") if folders["upscale_models"] else "Lanczos (no upscale "
            "model in ComfyUI/models/upscale_models/)")))
    reference = ("IPAdapterModelLoader", "IPAdapterAdvanced")
    gone = [n for n in reference if n not in info]
    lines.append(CheckLine(
        "reference images", not gone,
        "custom node missing: install ComfyUI_IPAdapter_plus in ComfyUI/custom_nodes/ (its "
        "models in models/ipadapter and models/clip_vision); not sent by Latent Studio yet"
        if gone else "IPAdapter nodes present; not sent by Latent Studio yet"))
    from studio.remote.control import check_lines  # per family: its ControlNets, or where

    lines.extend(CheckLine(*line) for line in check_lines(info, folders["controlnet"],
                                                          folders["checkpoints"]))
    lines.append(CheckLine("latent sliders", False, "local engine only"))
    return ServerReport(client.url, str(system.get("comfyui_version", "?")), device,
                        tuple(lines))


def check_servers(configs: list[ServerConfig]) -> str:
    """The connect check of each server, as one screen of text (unreachable ones say why)."""
    loop = EventLoopThread("studio-remote-check")
    parts = []
    try:
        for config in configs:
            client = ComfyClient(config)
            try:
                parts.append(loop.run(check_client(client), timeout=120).text())
            except StudioError as err:
                parts.append(f"{config.base}: {err}")
            finally:
                loop.run(client.close(), timeout=10)
    finally:
        loop.close()
    return "\n\n".join(parts)


def _family_line(family: str, label: str, missing_nodes: list[str],
                 folders: dict[str, list[str]]) -> CheckLine:
    """Flux, SD3 or Qwen-Image-Edit: its nodes, a model (a whole checkpoint, or a model
    alone in diffusion_models with the text encoders and VAE it needs beside it)."""
    from studio.remote.engine import guess_family

    if missing_nodes:
        return CheckLine(label, False, f"nodes missing: {', '.join(missing_nodes)} "
                                       "(update ComfyUI)")
    whole = [n for n in folders["checkpoints"] if guess_family(n) == family]
    alone = [n for n in folders["diffusion_models"] if guess_family(n) == family]
    if alone:
        _encoders, _vae, needs = wf.companions(family, folders["text_encoders"],
                                               folders["vae"])
        if needs:
            return CheckLine(label, False, f"{alone[0]} needs " + "; ".join(needs))
        names = [n for n in (*_encoders, _vae) if n]
        return CheckLine(label, True, f"{alone[0]} in models/diffusion_models with "
                                      + ", ".join(names))
    if whole:
        return CheckLine(label, True, f"{whole[0]} in models/checkpoints")
    example = {"flux": "flux1-dev.safetensors",
               "qwen-image-edit": "qwen_image_edit_2509_fp8_e4m3fn.safetensors"}.get(
        family, "sd3.5_medium.safetensors")
    return CheckLine(label, False, f"no {label} model: put one ({example}) in "
                                   f"ComfyUI/models/diffusion_models/ with "
                                   + wf.companions_wanted(family))
