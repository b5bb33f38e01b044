"""ControlNets for the transformer families (SD 3.x, Flux) and the Union ControlNets.

``studio.engine.control`` plans every control layer; this module adds what these models
need beside the SD/SDXL ``ControlNetModel``:

* **SD 3.x** (``SD3ControlNetModel``, several as ``SD3MultiControlNetModel``): text to
  image through ``StableDiffusion3ControlNetPipeline``. Its inpainting pipeline is made for
  inpainting ControlNets only (a mask as control), so image to image and inpainting with a
  control are refused in one line. The pipeline draws the control image's VAE latent from
  torch's global generator: the studio seeds it from the request's seed for the call (and
  restores it after), so the same request gives the same pixels.
* **Flux** (``FluxControlNetModel``, several as ``FluxMultiControlNetModel``): text to
  image, image to image and inpainting (``FluxControlNet*Pipeline``). A Flux union
  ControlNet (its config has ``num_mode``: InstantX/Shakker-Labs union) gets the control
  mode of each layer's kind. Flux's pipeline draws the control image's latent from the
  seed's generator, which moves the starting noise: a control at strength 0 is left out,
  so that strength 0 is exactly the image without it.
* **ControlNet-Union for SDXL** (``ControlNetUnionModel``, xinsir's union/promax; several
  as ``MultiControlNetUnionModel``): ``StableDiffusionXLControlNetUnion*Pipeline`` for text
  to image, image to image and inpainting, with the union's control mode per kind.

Each is found from its config class (``_class_name``) or its single file's tensor names,
with the family it fits; one of another family, or of another width than the model's
transformer (an SD 3.5 Large ControlNet on SD 3.5 Medium), is refused in one line before
it loads. A union's mode per kind can be set in a ``studio.json`` beside it
(``{"control_modes": {"scribble": 2}}``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from studio.core.errors import InvalidRequestError

log = logging.getLogger(__name__)

SD3, FLUX, UNION = "SD3ControlNetModel", "FluxControlNetModel", "ControlNetUnionModel"
ARCHS = (SD3, FLUX, UNION)
# Diffusion families whose transformer takes ControlNet residuals here.
DIT_CONTROL_FAMILIES = ("sd3", "flux")
FAMILY_LABELS = {"sd3": "SD 3.x", "flux": "Flux"}
ARCH_LABELS = {SD3: "ControlNet", FLUX: "ControlNet", UNION: "ControlNet-Union"}

# The control mode of each kind in a union ControlNet, as its makers number them.
# xinsir/controlnet-union-sdxl-1.0 (6 modes; promax 8): 0 openpose, 1 depth,
# 2 hed/pidi/scribble/ted, 3 canny/lineart/mlsd, 4 normal, 5 segment, 6 tile, 7 repaint.
# InstantX/Shakker-Labs FLUX.1-dev-ControlNet-Union(-Pro): 0 canny, 1 tile, 2 depth, 3 blur,
# 4 pose, 5 gray, 6 low quality (scribble and line art read as its canny mode).
UNION_MODES = {
    "sdxl": {"pose": 0, "depth": 1, "depth-estimate": 1, "scribble": 2, "lineart": 3,
             "edges": 3, "tile": 6},
    "flux": {"edges": 0, "lineart": 0, "scribble": 0, "tile": 1, "depth": 2,
             "depth-estimate": 2, "pose": 4},
}
_PIPES = {
    SD3: {"txt2img": "StableDiffusion3ControlNetPipeline"},
    FLUX: {"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
           "inpaint": "FluxControlNetInpaintPipeline"},
    UNION: {"txt2img": "StableDiffusionXLControlNetUnionPipeline",
            "img2img": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
            "inpaint": "StableDiffusionXLControlNetUnionInpaintPipeline"},
}
_TASK_WORDS = {"img2img": "image to image", "inpaint": "inpainting"}


# -- identification --------------------------------------------------------------------------
def config_arch(config: dict[str, Any]) -> tuple[str, str, int, int] | None:
    """(arch, family, union modes, width) of a control model's ``config.json``, or ``None``
    where it is none of these (a plain ControlNetModel or a T2I-Adapter). ``family`` is
    "" for a union ControlNet (read from its UNet config, as a ControlNetModel's is)."""
    cls = str(config.get("_class_name", ""))
    if cls == SD3:
        return SD3, "sd3", 0, _width(config)
    if cls == FLUX:
        return FLUX, "flux", int(config.get("num_mode") or 0), _width(config)
    if cls == UNION or (cls == "ControlNetModel" and config.get("num_control_type")):
        return UNION, "", int(config.get("num_control_type") or 6), 0
    return None


def _width(config: dict[str, Any]) -> int:
    return int(config.get("num_attention_heads") or 0) * int(config.get("attention_head_dim") or 0)


def file_arch(keys: dict[str, dict]) -> tuple[str, str, int, int] | None:
    """(arch, family, union modes, width) of a single-file control model from its tensor
    table (diffusers' key layouts; XLabs' Flux layout), or ``None`` where it is none of
    these. A union ControlNet's family is "" (read as a ControlNetModel's)."""
    names = list(keys)

    def rows(name: str) -> int:
        return int(keys[name]["shape"][0]) if name in keys else 0

    if "task_embedding" in keys and any(k.startswith("control_add_embedding.") for k in names):
        return UNION, "", rows("task_embedding"), 0
    flux = (any(k.startswith(("controlnet_x_embedder.", "controlnet_single_blocks.",
                              "double_blocks.")) for k in names))
    if flux:
        width = rows("controlnet_x_embedder.weight") or rows("img_in.weight")
        return FLUX, "flux", rows("controlnet_mode_embedder.weight"), width
    if (any(k.startswith("pos_embed_input.") for k in names)
            and any(k.startswith("controlnet_blocks.") for k in names)):
        width = next((int(v["shape"][0]) for k, v in keys.items()
                      if k.startswith("controlnet_blocks.") and k.endswith(".weight")), 0)
        return SD3, "sd3", 0, width
    return None


def kinds_for(arch: str, family: str, modes: int, overrides: dict[str, Any] | None = None
              ) -> tuple[str, ...]:
    """The control kinds a union ControlNet has a mode for (empty: not a union)."""
    table = mode_table(arch, family, modes, overrides)
    return tuple(table)


def mode_table(arch: str, family: str, modes: int, overrides: dict[str, Any] | None = None
               ) -> dict[str, int]:
    """Kind -> control mode of a union ControlNet with ``modes`` modes ({} for others)."""
    if not modes or arch not in (UNION, FLUX):
        return {}
    table = dict(UNION_MODES.get(family, {}))
    for kind, mode in (overrides or {}).items():
        table[str(kind)] = int(mode)
    return {kind: mode for kind, mode in table.items() if 0 <= mode < modes}


# -- checks ----------------------------------------------------------------------------------
def transformer_width(pipe: Any = None, folder: str = "") -> int:
    """The width (heads x head size) of a loaded pipeline's transformer, or of the one in
    the diffusers folder ``folder`` (its config only); 0 where there is none."""
    net = getattr(pipe, "transformer", None)
    if net is not None:
        return _width(dict(net.config))
    if folder:
        from pathlib import Path

        from studio.engine.models.families import read_json

        path = Path(folder) / "transformer" / "config.json"
        return _width(read_json(path)) if path.is_file() else 0
    return 0


def check(infos: list[Any], controls: list[Any], task: str, width: int, model_name: str) -> None:
    """Refuse in one line what these control models cannot do here, before they load:
    ControlNets of different kinds in one generation, a task diffusers has no pipeline for,
    a kind a union ControlNet has no mode for, a transformer of another width."""
    archs = {info.arch for info in infos}
    if not archs & set(ARCHS):
        return
    if len(archs) > 1:
        names = " and ".join(sorted(f"{ARCH_LABELS.get(a, 'ControlNet')} {i.name}"
                                    for a, i in {i.arch: i for i in infos}.items()))
        raise InvalidRequestError(f"{names} cannot run in one generation (diffusers has no "
                                  "pipeline for both); use control models of one kind.")
    arch = archs.pop()
    if task not in _PIPES[arch]:
        raise InvalidRequestError(
            f"SD 3.x ControlNets work in text to image only here (diffusers has no SD 3.x "
            f"ControlNet pipeline for {_TASK_WORDS.get(task, task)}); generate without the "
            "control layer, or from text.")
    for info, control in zip(infos, controls, strict=True):
        if info.modes:
            table = mode_table(info.arch, info.family, info.modes, dict(info.mode_overrides))
            if control.kind not in table:
                raise InvalidRequestError(
                    f"{info.label} has no control mode for "
                    f"{control.kind}; it reads {', '.join(table) or 'none of the studio kinds'}.")
    if width:
        want = width
        for info in infos:
            if info.width and info.width != want:
                raise InvalidRequestError(
                    f"{info.label} is {info.width} wide; {model_name}'s transformer is {want} "
                    "wide (another size of the family, e.g. SD 3.5 Large against Medium): "
                    "nothing was loaded.", hint="Pick a ControlNet made for this model.")


def drop_idle(controls: list[Any], family: str) -> list[Any]:
    """The controls at strength 0 left out, in every family, so that strength 0 is exactly
    the image without them: Flux's pipeline would move the seed's noise to encode their
    images, for residuals of zero; on SD a T2I-Adapter's zero features, added to the UNet's,
    changed the image's last bits on an AVX2-only CPU (an AMD EPYC; not on AVX-512 ones);
    and their models are not loaded or run for nothing."""
    del family  # the same in every family
    kept = [c for c in controls if c.strength > 0]
    if len(kept) < len(controls):
        log.info("A control at strength 0 does nothing: left out.")
    return kept


# -- pipelines and their arguments -----------------------------------------------------------
def pipeline(plan: Any, loaded: Any, task: str) -> Any:
    """Diffusers' pipeline for ``task`` with ``plan``'s SD3/Flux/union ControlNets, made from
    the loaded model's modules with ``from_pipe``."""
    import diffusers

    arch = plan.infos[0].arch
    cls = getattr(diffusers, _PIPES[arch][task])
    if arch == SD3:
        cls = _seeded(cls)
    models = plan.models[0] if len(plan.models) == 1 else list(plan.models)
    pipe = cls.from_pipe(loaded.pipe, controlnet=models)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def kwargs(plan: Any, task: str) -> dict[str, Any]:
    """The control arguments of an SD3/Flux/union pipeline call."""
    arch = plan.infos[0].arch
    one = len(plan.maps) == 1

    def value(items: list[Any]) -> Any:
        return items[0] if one else list(items)

    args: dict[str, Any] = {"control_image": value(plan.maps),
                            "controlnet_conditioning_scale": value(plan.strengths),
                            "control_guidance_start": value(plan.starts),
                            "control_guidance_end": value(plan.ends)}
    modes = [mode_table(i.arch, i.family, i.modes, dict(i.mode_overrides)).get(k)
             if i.modes else None
             for i, k in zip(plan.infos, plan.control_kinds, strict=True)]
    if arch == UNION:
        args["control_image"] = list(plan.maps)  # one image (and mode) per union net
        args["control_mode"] = modes
        if one:
            args["controlnet_conditioning_scale"] = float(plan.strengths[0])
    elif arch == FLUX and any(m is not None for m in modes):
        args["control_mode"] = modes[0] if one else modes
    return args


@functools.cache
def _seeded(cls: type) -> type:
    """``cls`` (SD 3.x's ControlNet pipeline) with torch's global generator seeded from the
    call's first generator for the call: the pipeline samples the control image's latent
    from it, so the same seed gives the same image. The generator is restored after."""

    class Seeded(cls):  # type: ignore[misc,valid-type]
        @functools.wraps(cls.__call__)
        def __call__(self, *args: Any, **kw: Any) -> Any:
            import torch

            gens = kw.get("generator")
            first = gens[0] if isinstance(gens, list) and gens else gens
            if first is None:
                return super().__call__(*args, **kw)
            device = self._execution_device
            cuda = ([torch.cuda.current_device() if device.index is None else device.index]
                    if device.type == "cuda" else [])
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(first.initial_seed())
                return super().__call__(*args, **kw)

    Seeded.__name__ = Seeded.__qualname__ = cls.__name__
    return Seeded
