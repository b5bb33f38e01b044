"""LoRA files as weight sliders: several at once, any weight in -3 .. 3, exact unloading.

A LoRA adds ``weight * alpha / rank * up(down(x))`` to the output of the layers it names.
We add it with forward hooks instead of merging it into the weights: the base weights are
never written, so removing the hooks restores the base model bit for bit, and changing a
weight (a slider drag) costs nothing.

Key layouts read (``.safetensors`` only, never a pickle):

* kohya / sd-scripts: ``lora_unet_<module_path_with_underscores>.lora_down.weight``,
  ``.lora_up.weight``, ``.alpha``; text encoders ``lora_te_`` (SD 1/2), ``lora_te1_`` and
  ``lora_te2_`` (SDXL);
* diffusers / PEFT: ``unet.<module.path>.lora_A.weight`` / ``.lora_B.weight`` (or
  ``.lora.down.weight`` / ``.lora.up.weight``), ``text_encoder.`` / ``text_encoder_2.``
  prefixes, optional ``.alpha``; keys without a prefix belong to the UNet.
* transformer (DiT) models: whatever the pipeline's own diffusers LoRA loader reads
  (``lora_state_dict``: Flux LoRAs in kohya, XLabs, Black Forest Labs and diffusers layouts,
  SD 3's, Qwen-Image's ...), converted by it to ``transformer.<module.path>`` keys, which
  bind here as above; keys without a prefix belong to the transformer.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.jobs.request import LoraWeight

log = logging.getLogger(__name__)

_PAIRS = ((".lora_down.weight", ".lora_up.weight"), (".lora.down.weight", ".lora.up.weight"),
          (".lora_A.weight", ".lora_B.weight"))
_KOHYA = (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
          ("lora_te_", "text_encoder"))
_DOTTED = (("unet.", "unet"), ("text_encoder_2.", "text_encoder_2"),
           ("text_encoder.", "text_encoder"), ("te1.", "text_encoder"),
           ("te2.", "text_encoder_2"), ("transformer.", "transformer"))
COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


class LoraError(StudioError):
    """A LoRA file that cannot be used with the loaded model."""


@dataclass
class LoraLayer:
    """One layer's low-rank update: ``scale * up(down(x))``."""

    down: Any
    up: Any
    scale: float


@dataclass
class LoraAdapter:
    """A parsed LoRA file, bound to one pipeline's modules."""

    path: str
    layers: dict[Any, LoraLayer] = field(default_factory=dict)  # module -> layer
    components: set[str] = field(default_factory=set)

    @property
    def touches_text(self) -> bool:
        return bool(self.components & {"text_encoder", "text_encoder_2"})


def _module_maps(pipe: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Per component: (dotted name -> module, underscored name -> module)."""
    maps = {}
    for comp in COMPONENTS:
        model = getattr(pipe, comp, None)
        if model is None:
            continue
        dotted = dict(model.named_modules())
        maps[comp] = (dotted, {k.replace(".", "_"): m for k, m in dotted.items()})
    return maps


def _resolve(base: str, maps: dict[str, tuple[dict[str, Any], dict[str, Any]]]
             ) -> tuple[str, Any] | None:
    for prefix, comp in _KOHYA:
        if base.startswith(prefix):
            if comp not in maps:
                return None
            name = base[len(prefix):]
            module = maps[comp][1].get(name)
            return (comp, module) if module is not None else None
    comp, name = ("unet" if "unet" in maps else "transformer"), base
    for prefix, c in _DOTTED:
        if base.startswith(prefix):
            comp, name = c, base[len(prefix):]
            break
    if comp not in maps:
        return None
    module = maps[comp][0].get(name)
    return (comp, module) if module is not None else None


def _in_diffusers_layout(state: dict[str, Any], pipe: Any, name: str) -> dict[str, Any]:
    """A transformer model's LoRA as its pipeline's own diffusers loader converts it
    (``lora_state_dict``: kohya's, XLabs' and other layouts to ``transformer.`` keys, the
    kohya alphas folded in; other alphas kept as ``<layer>.alpha``); a UNet model's as read."""
    import inspect

    if getattr(pipe, "unet", None) is not None or getattr(pipe, "transformer", None) is None:
        return state
    loader = getattr(type(pipe), "lora_state_dict", None)
    if loader is None:
        return state
    kwargs = ({"return_alphas": True}
              if "return_alphas" in inspect.signature(loader).parameters else {})
    try:
        out = loader(dict(state), **kwargs)  # a dict: read here already, never a pickle
    except Exception as err:  # a layout the converter rejects
        said = " ".join(str(err).split())[:160]
        raise LoraError(f"{name} is not a LoRA for this model: its diffusers loader does not "
                        f"read it ({said}).",
                        hint="Pick a LoRA made for this model family.") from err
    converted, alphas = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    converted = dict(converted)
    for key, alpha in (alphas or {}).items():  # "<layer>.alpha", as the layer's own
        converted.setdefault(key if key.endswith(".alpha") else f"{key}.alpha", alpha)
    return converted


def parse_lora(path: str | Path, pipe: Any) -> LoraAdapter:
    """Read a LoRA file and bind its layers to ``pipe``'s modules."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise LoraError(f"{path.name}: only .safetensors LoRA files are read.")
    if not path.is_file():
        raise LoraError(f"There is no LoRA file at {path}.")
    try:
        state = load_file(str(path))
    except Exception as err:
        raise LoraError(f"{path.name} is not a readable safetensors file ({err}).") from err
    state = _in_diffusers_layout(state, pipe, path.name)
    maps = _module_maps(pipe)
    adapter = LoraAdapter(str(path))
    missing = 0
    for key, down in state.items():
        pair = next((p for p in _PAIRS if key.endswith(p[0])), None)
        if pair is None:
            continue
        base = key[: -len(pair[0])]
        up = state.get(base + pair[1])
        if up is None:
            continue
        found = _resolve(base, maps)
        if found is None or not isinstance(found[1], torch.nn.Linear | torch.nn.Conv2d):
            missing += 1
            continue
        comp, module = found
        rank = down.shape[0]
        alpha = state.get(base + ".alpha")
        scale = float(alpha) / rank if alpha is not None else 1.0
        weight = module.weight
        adapter.layers[module] = LoraLayer(down.to(weight.device, torch.float32),
                                           up.to(weight.device, torch.float32), scale)
        adapter.components.add(comp)
    if not adapter.layers:
        raise LoraError(f"{path.name} does not fit this model: none of its "
                        f"{missing} layers were found.",
                        hint="Pick a LoRA made for this model family.")
    if missing:
        log.warning("%s: %d LoRA layers did not match the model and are ignored",
                    path.name, missing)
    return adapter


def _lora_out(module: Any, layer: LoraLayer, x: Any) -> Any:
    from torch.nn import functional as F

    down, up = layer.down.to(x.dtype), layer.up.to(x.dtype)
    if down.dim() == 4:
        h = F.conv2d(x, down, stride=module.stride, padding=module.padding,
                     dilation=module.dilation)
        return F.conv2d(h, up)
    return F.linear(F.linear(x, down), up)


class LoraState:
    """The LoRAs active on one pipeline (its components shared by img2img/inpaint)."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = weakref.ref(pipe)
        self._adapters: dict[str, LoraAdapter] = {}
        self._handles: list[Any] = []
        self.active: tuple[tuple[str, float], ...] = ()

    def adapter(self, path: str) -> LoraAdapter:
        if path not in self._adapters:
            pipe = self._pipe()
            if pipe is None:
                raise LoraError("The model was unloaded.")
            self._adapters[path] = parse_lora(path, pipe)
        return self._adapters[path]

    def set(self, loras: Iterable[LoraWeight]) -> None:
        """Make exactly these LoRAs active (weight 0 means not applied at all)."""
        wanted = tuple((lw.path, float(lw.weight)) for lw in loras if lw.weight != 0)
        if wanted == self.active:
            return
        adapters = [(self.adapter(path), weight) for path, weight in wanted]
        self.clear()
        per_module: dict[Any, list[tuple[LoraLayer, float]]] = {}
        for adapter, weight in adapters:
            for module, layer in adapter.layers.items():
                per_module.setdefault(module, []).append((layer, weight))
        for module, entries in per_module.items():
            self._handles.append(module.register_forward_hook(_hook(entries)))
        self.active = wanted

    def clear(self) -> None:
        """Remove every hook: the base model again, bit for bit."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.active = ()


def _hook(entries: list[tuple[LoraLayer, float]]):  # type: ignore[no-untyped-def]
    def hook(module: Any, args: tuple[Any, ...], output: Any) -> Any:
        x = args[0]
        for layer, weight in entries:
            output = output + (weight * layer.scale) * _lora_out(module, layer, x)
        return output

    return hook


_STATES: weakref.WeakKeyDictionary[Any, LoraState] = weakref.WeakKeyDictionary()


def lora_state(pipe: Any) -> LoraState:
    """The LoRA state of a pipeline (created on first use)."""
    state = _STATES.get(pipe)
    if state is None:
        state = _STATES[pipe] = LoraState(pipe)
    return state


def apply_loras(pipe: Any, loras: Iterable[LoraWeight]) -> None:
    """Activate ``loras`` on ``pipe`` (an empty list unloads every LoRA exactly)."""
    lora_state(pipe).set(loras)


def lora_signature(loras: Iterable[LoraWeight]) -> tuple[tuple[str, float], ...]:
    """What of the LoRA state shapes the text embeddings (for cache keys)."""
    return tuple((lw.path, float(lw.weight)) for lw in loras if lw.weight != 0)
