"""Control layers on a ComfyUI server, built from ComfyUI's own core nodes.

The studio preprocesses each control layer itself, as for the local engine
(``studio.core.control.control_map``: strokes, Canny edges, a depth image, a tile, a pose,
at the request's size), and uploads the finished control map once per content (the
client's upload names a file by its hash). On the server, each control is a
``ControlNetLoader`` with one of its ``models/controlnet`` files (one loader per file, shared
by the controls that use it), a ``LoadImage`` of the map, and a ``ControlNetApplyAdvanced``
that takes the positive and negative conditioning with the control's strength and its range
of the steps (``start_percent``, ``end_percent``). Several controls are chained, each
``ControlNetApplyAdvanced`` taking the conditioning the one before gave, as ComfyUI's own
multi-ControlNet workflows do.

The server says only the names of its ControlNets, so their family (SD 1.x, SDXL ...) and
the kinds they read (canny, scribble ...) are read from the names, as those files are named
(``control_v11p_sd15_scribble``, ``controlnet-canny-sdxl-1.0``); one of another family than
the model is refused in one line before anything runs. A depth map estimated from a photo
needs the studio's depth-estimation model, which the remote backend does not load: that
kind is off on servers (a depth image works). T2I-Adapters in ``models/controlnet`` are
loaded by the same ``ControlNetLoader``; the studio sends them as ControlNets.
Imports no torch.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from studio.core.control import (
    DEPTH_ESTIMATE_OFF,
    KIND_LABELS,
    MODEL_KIND,
    ControlLayer,
    control_map,
    is_empty,
)
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest

log = logging.getLogger(__name__)

NODES = ("ControlNetLoader", "LoadImage", "ControlNetApplyAdvanced")
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "flux": "Flux",
                 "sd3": "SD3"}
EXAMPLES = {"sd1": "control_v11p_sd15_scribble.safetensors",
            "sd2": "control_v11p_sd21_canny.safetensors",
            "sdxl": "controlnet-canny-sdxl-1.0.safetensors",
            "flux": "flux-canny-controlnet.safetensors",
            "sd3": "sd3.5_large_controlnet_canny.safetensors"}
DEPTH_ESTIMATE_OFF_REMOTE = ("Depth from a photo is estimated by the local engine's "
                             "depth model, which a server backend does not load; use a depth "
                             "image (Depth) on a server.")
EDGES_OFF_THIN = ("Edges (Canny) are found with scipy, which this install (without the local "
                  "engine) leaves out: pip install scipy, or draw the lines (Line art).")


def kinds_off() -> list[tuple[str, str]]:
    """(control kind, why it is off) on servers: depth from a photo (no depth model here),
    and edges where scipy is not installed (the thin install)."""
    import importlib.util

    off = [("depth-estimate", DEPTH_ESTIMATE_OFF_REMOTE)]
    if importlib.util.find_spec("scipy") is None:
        off.append(("edges", EDGES_OFF_THIN))
    return off


# The kinds a ControlNet reads, from the words of its file name.
_KIND_WORDS = (("edges", ("canny", "edge")), ("lineart", ("lineart", "line_art", "line-art")),
               ("scribble", ("scribble", "sketch", "hed", "softedge")),
               ("depth", ("depth",)), ("tile", ("tile",)), ("pose", ("pose",)))


@dataclass(frozen=True)
class ServerControl:
    """One control as the workflow takes it: names the server knows things by."""

    controlnet: str  # the server's ControlNet name (as /models/controlnet lists it)
    image: str  # the uploaded control map's name
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


# -- names ------------------------------------------------------------------------------------
def _words(name: str) -> list[str]:
    stem = PurePosixPath(name.replace("\\", "/")).name.lower()
    stem = re.sub(r"\.(safetensors|pth|ckpt|bin|pt)$", "", stem)
    return [w for w in re.split(r"[^a-z0-9.]+", stem) if w]


def controlnet_family(name: str) -> str:
    """The base family a ControlNet file is for, read from its name ("" when it does not
    say): ``sd15``/``sd1.5``/``v11p`` SD 1.x, ``sd21`` SD 2.x, ``sdxl``/``xl`` SDXL ..."""
    words = _words(name)
    joined = "_".join(words)
    if "flux" in joined:
        return "flux"
    if re.search(r"sd3|sd_3", joined):
        return "sd3"
    if "sdxl" in joined or "xl" in words or re.search(r"(^|_)xl|xl($|_)", joined):
        return "sdxl"
    if re.search(r"sd2|sd_2|v2_", joined):
        return "sd2"
    if re.search(r"sd15|sd1\.5|sd_15|sd1($|_)|v11[pefu]|control_v1|sd_1", joined):
        return "sd1"
    return ""


def controlnet_kinds(name: str) -> tuple[str, ...]:
    """The control kinds a ControlNet reads, from its name (empty: it does not say)."""
    low = "_".join(_words(name))
    return tuple(kind for kind, words in _KIND_WORDS if any(w in low for w in words))


def base_family(family: str) -> str:
    """The family a ControlNet must be for to fit a main model of ``family``."""
    head = family.split("-")[0]
    for base in ("sdxl", "sd1", "sd2", "sd3", "flux"):
        if head.startswith(base):
            return base
    return head


def _label(family: str) -> str:
    return FAMILY_LABELS.get(family, family or "an unknown family")


def choose(control: ControlLayer, names: Sequence[str], family: str, url: str,
           model: str = "") -> str:
    """The server's ControlNet for ``control`` on a main model of ``family``: the one the
    control names (its name, or a file stem: a local path's file name), else the first of
    the model's family for the control's kind, else of its family for any kind.

    Raises
    ------
    ServerModelMissingError
        The named one, or any of the model's family, is not on the server.
    InvalidRequestError
        The named one is of another family than the model (one line naming both).
    """
    from studio.remote.errors import ServerModelMissingError

    base = base_family(family)
    listing = ", ".join(names) if names else "nothing"
    if control.model:
        wanted = control.model.strip().replace("\\", "/")
        stem = PurePosixPath(wanted).name.lower()
        stem = re.sub(r"\.(safetensors|pth|ckpt|bin|pt)$", "", stem)
        found = next((n for n in names if n == wanted), None) or next(
            (n for n in names if n.lower() == wanted.lower()), None) or next(
            (n for n in names if re.sub(r"\.(safetensors|pth|ckpt|bin|pt)$", "",
                                        PurePosixPath(n).name.lower()) == stem), None)
        if found is None:
            raise ServerModelMissingError(
                f"The ControlNet {control.model!r} is not on {url} (its models/controlnet/ "
                f"has {listing}).",
                hint="Put it in the server's ComfyUI/models/controlnet/, or choose one it has.")
        own = controlnet_family(found)
        if base and own and own != base:
            raise InvalidRequestError(
                f"The ControlNet {found} is for {_label(own)}; the model {model or 'chosen'} "
                f"is {_label(base)}.")
        return found
    kind = MODEL_KIND.get(control.kind, control.kind)
    fitting = [n for n in names if not base or controlnet_family(n) == base]
    unsure = [n for n in names if base and not controlnet_family(n)]
    for pool in (fitting, unsure):
        for n in pool:
            if kind in controlnet_kinds(n):
                return n
        for n in pool:
            if not controlnet_kinds(n):
                return n
    where = "ComfyUI/models/controlnet/"
    if fitting or unsure:
        have = ", ".join(fitting or unsure)
        raise ServerModelMissingError(
            f"No {KIND_LABELS.get(kind, kind).lower()} ControlNet for {_label(base)} on {url} "
            f"(it has {have}); choose one by name for this control.",
            hint=f"Put one in {where} on the server.")
    raise ServerModelMissingError(
        f"No ControlNet for {_label(base)} in models/controlnet/ on {url}"
        + (f" (it has {listing})" if names else "") + ".",
        hint=f"Put one ({EXAMPLES.get(base, EXAMPLES['sd1'])}) in {where} on the server.")


# -- the maps and their upload ------------------------------------------------------------------
def control_maps(request: GenerationRequest,
                 depth: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> list[tuple[ControlLayer, np.ndarray]]:
    """Each control of ``request`` with its finished map (uint8 RGB at the request's size),
    made here as for the local engine; empty layers are skipped (said in the log)."""
    out = []
    for i, control in enumerate(request.controls, 1):
        if is_empty(control.image):
            log.info("control layer %d (%s) is empty: skipped", i,
                     KIND_LABELS.get(control.kind, control.kind).lower())
            continue
        try:
            arr, note = control_map(control.kind, control.image, request.width,
                                    request.height, depth=depth)
        except ValueError as err:
            text = DEPTH_ESTIMATE_OFF_REMOTE if str(err) == DEPTH_ESTIMATE_OFF else str(err)
            raise InvalidRequestError(text) from err
        except ImportError as err:  # the thin install has no scipy (Canny edges)
            raise InvalidRequestError(EDGES_OFF_THIN) from err
        if note:
            log.info("%s", note)
        out.append((control, arr))
    return out


async def server_controls(client: Any, request: GenerationRequest, family: str,
                          model: str = "",
                          depth: Callable[[np.ndarray], np.ndarray] | None = None
                          ) -> tuple[ServerControl, ...]:
    """The controls of ``request`` on ``client``'s server: each map uploaded (once per
    content) and its ControlNet chosen among the server's; () without controls."""
    if not request.controls:
        return ()
    from studio.remote.client import encode_png

    maps = control_maps(request, depth)
    if not maps:
        return ()
    names = await client.models("controlnet")
    out = []
    for control, arr in maps:
        chosen = choose(control, names, family, client.url, model)
        image = await client.upload(encode_png(arr))
        out.append(ServerControl(chosen, image, float(control.strength),
                                 float(control.start), float(control.end)))
    return tuple(out)


def resolved_controls(request: GenerationRequest, workflow: dict[str, dict]
                      ) -> tuple[ControlLayer, ...]:
    """``request``'s controls with the ControlNet each ran with on the server (its name
    there), read from the ``workflow`` that ran: "Use settings" then runs the same ones, and
    the image's A1111 fields name them. Empty layers (not sent) keep their model."""
    loaders = {node_id: node["inputs"].get("control_net_name", "")
               for node_id, node in workflow.items()
               if node.get("class_type") == "ControlNetLoader"}
    used = [loaders.get(str(node["inputs"]["control_net"][0]), "")
            for node in workflow.values()
            if node.get("class_type") == "ControlNetApplyAdvanced"]
    out, sent = [], iter(used)
    for control in request.controls:
        name = "" if is_empty(control.image) else next(sent, "")
        out.append(dataclasses.replace(control, model=name) if name else control)
    return tuple(out)


# -- the workflow's part ---------------------------------------------------------------------
def apply(g: Any, controls: Sequence[ServerControl], positive: list, negative: list,
          vae: list | None = None) -> tuple[list, list]:
    """The conditioning pair with ``controls`` applied, in order (unchanged without any).
    ``g``: the workflow being built (``add(class_type, **inputs)`` gives a node id); ``vae``:
    given to ``ControlNetApplyAdvanced`` (the Flux and SD3 ControlNets encode their map)."""
    loaders: dict[str, str] = {}
    for control in controls:
        if control.controlnet not in loaders:
            loaders[control.controlnet] = g.add("ControlNetLoader",
                                                control_net_name=control.controlnet)
        image = [g.add("LoadImage", image=control.image), 0]
        inputs: dict[str, Any] = {"positive": positive, "negative": negative,
                                  "control_net": [loaders[control.controlnet], 0],
                                  "image": image, "strength": float(control.strength),
                                  "start_percent": float(control.start),
                                  "end_percent": float(control.end)}
        if vae is not None:
            inputs["vae"] = vae
        node = g.add("ControlNetApplyAdvanced", **inputs)
        positive, negative = [node, 0], [node, 1]
    return positive, negative


# -- the window's control model picker ---------------------------------------------------------
@dataclass(frozen=True)
class ServerControlNet:
    """A ControlNet on a server, as the control model picker lists one (the fields of the
    local engine's ``ControlModelInfo`` it reads); ``name`` is the server's name for it."""

    id: str
    name: str
    kind: str  # "controlnet" or "t2i-adapter"
    family: str  # read from the name ("" when it does not say)
    path: str  # "server · controlnet/name"

    @property
    def label(self) -> str:
        what = "T2I-Adapter" if self.kind == "t2i-adapter" else "ControlNet"
        return f"{what} {PurePosixPath(self.name).stem} ({_label(self.family)}, server)"


class RemoteControls:
    """The servers' ControlNets for the window (``engine.controls.list()``, as the local
    engine offers its own): the list last read, asked again in the background at most every
    ``every_s`` seconds, so the window's thread never waits on the network (the first call
    gives none yet)."""

    def __init__(self, engine: Any, every_s: float = 30.0) -> None:
        self._engine = engine
        self._every_s = every_s
        self._known: list[ServerControlNet] = []
        self._asked = -1e9
        self._pending: Any = None

    def list(self) -> list[ServerControlNet]:
        import time

        now = time.monotonic()
        if (self._pending is None or self._pending.done()) and now - self._asked >= self._every_s \
                and not getattr(self._engine, "_closed", False):
            self._asked = now
            self._pending = self._engine.loop.submit(self._engine._list_models("controlnet"))
            self._pending.add_done_callback(self._read)
        return list(self._known)

    def fitting(self, model: Any) -> list[ServerControlNet]:
        """The servers' ControlNets whose name says the family of diffusion ``model``."""
        from studio.remote.engine import guess_family

        family = str(getattr(model, "family", "") or "") or \
            guess_family(str(getattr(model, "id", "")))
        if not family:
            return []
        want = base_family(family)
        return [c for c in self.list() if c.family == want]

    def _read(self, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self._known = [ServerControlNet(
            id=m.id, name=m.id, family=controlnet_family(m.id), path=m.path,
            kind="t2i-adapter" if re.search(r"t2i|adapter", m.id.lower()) else "controlnet")
            for m in future.result()]


# -- the connect check -----------------------------------------------------------------------
def check_lines(info: dict[str, Any], controlnets: Sequence[str],
                checkpoints: Sequence[str]) -> list[tuple[str, bool, str]]:
    """The connect check's lines for control layers, ``(what, ok, detail)``: the nodes, then
    per family of the server's models, its ControlNets or what is missing and where it
    goes."""
    from studio.remote.engine import guess_family

    missing = [n for n in NODES if n not in info]
    if missing:
        return [("control layers", False, f"nodes missing: {', '.join(missing)} "
                                          "(update ComfyUI)")]
    families = list(dict.fromkeys(base_family(guess_family(n)) for n in checkpoints))
    families = [f for f in families if f in FAMILY_LABELS] or ["sd1", "sdxl"]
    lines = []
    for family in families:
        mine = [n for n in controlnets if controlnet_family(n) == family]
        unsure = [n for n in controlnets if not controlnet_family(n)]
        what = f"control ({_label(family)})"
        if mine:
            lines.append((what, True, f"{len(mine)} in models/controlnet: "
                                      + ", ".join(mine[:3]) + (", ..." if len(mine) > 3 else "")))
        elif unsure:
            lines.append((what, True, f"{', '.join(unsure[:3])} in models/controlnet (family "
                                      "not in the name: chosen for any model)"))
        else:
            lines.append((what, False, f"no ControlNet for {_label(family)} in "
                                       f"models/controlnet/: put one "
                                       f"({EXAMPLES.get(family, EXAMPLES['sd1'])}) in "
                                       "ComfyUI/models/controlnet/"))
    lines.append(("depth from a photo", False, "local engine only (its depth model); a depth "
                                               "image works on servers"))
    return lines


__all__ = ["RemoteControls", "ServerControl", "ServerControlNet", "apply", "check_lines", "choose", "control_maps",
           "controlnet_family", "controlnet_kinds", "resolved_controls", "server_controls"]
