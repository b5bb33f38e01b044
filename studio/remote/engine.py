"""``RemoteEngine``: the engine protocol over one or several ComfyUI servers.

``generate`` builds the workflow (``studio.remote.workflow``), runs it on a free server of the
pool that has the model (a batch is split across free servers, image ``i`` keeping seed
``seed + i``), streams progress and previews back to the calling thread, and fetches the
pixels with ``/view``. All network work runs on the backend's one event loop thread; the
caller's ``on_step`` is called on the caller's own thread.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from studio.core.engines import EngineFeatures
from studio.core.errors import CancelledError, InvalidRequestError, StudioError
from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.events import GenerationResult, StepProgress
from studio.core.jobs.request import GenerationRequest
from studio.core.models import DeviceInfo, ModelInfo
from studio.remote import workflow as wf
from studio.remote.client import (
    RECONNECT_S,
    STALL_S,
    STATUS_TIMEOUT_S,
    EventLoopThread,
    Progress,
    ServerConfig,
    check_url,
    drain,
    encode_png,
)
from studio.remote.errors import ServerModelMissingError, ServerUnreachableError
from studio.remote.pool import Server, ServerPool, ServerStatus

# Our model kinds -> the server's model folders (a diffusion model is a whole checkpoint, or,
# Flux and SD3 style, a model alone in diffusion_models with its text encoders beside it).
FOLDERS = {"diffusion": ("checkpoints", "diffusion_models"), "lora": ("loras",),
           "vae": ("vae",), "upscaler": ("upscale_models",), "text_encoder": ("text_encoders",),
           "controlnet": ("controlnet",)}  # ControlNets: sent by studio.remote.control
CANCEL_WAIT_S = 60.0  # how long a job cancelled from its progress callback waits for the
# server to drop it (a step or two: ComfyUI checks for an interrupt between steps)
LOCAL_ONLY = (("prompt_sliders", "Latent sliders run on the local engine only."),
              ("latent_sliders", "Latent sliders run on the local engine only."),
              ("example_directions", "Directions from examples run on the local engine only."),
              ("model_management", "Models on a server are managed on the server."))


@dataclass(frozen=True)
class RemoteGenerationResult(GenerationResult):
    """A result made on a server: which one, and the workflow(s) it ran."""

    server: str = ""
    workflows: tuple[dict, ...] = field(default=(), repr=False)
    counts: tuple[int, ...] = ()  # how many of ``images`` each workflow made, in order

    def metadata(self) -> dict[str, Any]:
        return {"backend": "comfyui", "server": self.server, "workflows": list(self.workflows)}

    def workflow_for(self, index: int) -> dict | None:
        """The workflow (ComfyUI API format) that made image ``index``."""
        start = 0
        for workflow, count in zip(self.workflows, self.counts, strict=False):
            if index < start + count:
                return workflow
            start += count
        return self.workflows[0] if len(self.workflows) == 1 else None


@dataclass(frozen=True)
class Model:
    """The main model of a job as the server knows it."""

    name: str  # the server's name for it
    family: str  # "sd1", "sdxl", "flux", "sd3", ... ("" when unknown: an SD checkpoint)
    folder: str = "checkpoints"  # or "diffusion_models"


def _features_used(request: GenerationRequest, family: str, enlarge_with: str) -> list[str]:
    """The ``workflow.REQUIRED_NODES`` keys a job needs (to name what a server lacks)."""
    keys = ["txt2img"]
    if wf.edits(request, family):
        keys.append(wf.edit_feature(family))
    elif request.task == "img2img":
        keys.append("img2img")
    elif request.task == "inpaint":
        keys.append("inpainting")
    if request.loras:
        keys.append("lora")
    if wf.varies(request):
        keys.append("variation")
    if enlarge_with:
        keys.append("hires")
        if enlarge_with.lower() != "lanczos":
            keys.append("upscaling")
    if family.split("-")[0] in wf.FLOW_FAMILIES:
        keys.append(family.split("-")[0])
    if request.regions:
        keys.append("regions")
    if request.controls:
        keys.append("control")
    return keys


def refuse_edit_model(family: str, name: str) -> None:
    """Instruction-editing models other than Flux Kontext and Qwen-Image-Edit (whose edits
    are built from ComfyUI's own nodes: ``workflow.edits``) are not run on servers: a Flux 2
    Klein file run as plain Flux would fail or give another picture."""
    if family == "flux2-klein":
        raise InvalidRequestError(
            f"{name} is a Flux 2 Klein model (a Qwen3 text encoder and the Flux 2 VAE): "
            "Latent Studio builds no ComfyUI workflow for it yet; edit with it on the local "
            "engine.")



def guess_family(name: str) -> str:
    """A checkpoint's family from its name (the server does not say); "" when unsure."""
    low = name.lower()
    if "qwen_image_edit" in low.replace("-", "_").replace(" ", "_"):
        return "qwen-image-edit"
    for marker, family in (("kontext", "flux-kontext"), ("klein", "flux2-klein"),
                           ("flux", "flux"), ("sd3", "sd3"), ("sd_3", "sd3"), ("sdxl", "sdxl"),
                           ("xl", "sdxl"),
                           ("v2-", "sd2"), ("sd2", "sd2"), ("1.5", "sd1"), ("sd15", "sd1"),
                           ("sd1", "sd1"), ("v1-", "sd1")):
        if marker in low:
            return family
    return ""


class RemoteEngine:
    """The remote backend (implements ``studio.core.engines.Engine``).

    Parameters
    ----------
    servers
        Server addresses (``http://host:8188``) or ``ServerConfig`` values (with a token,
        or trusting a certificate that does not verify).
    timeout
        Seconds a call that is not a generation (model lists, uploads) may take.
    """

    def __init__(self, servers: Sequence[str | ServerConfig], *, timeout: float = 300.0,
                 stall_s: float = STALL_S, reconnect_s: float = RECONNECT_S) -> None:
        configs = [s if isinstance(s, ServerConfig) else ServerConfig(check_url(s))
                   for s in servers]
        if not configs:
            raise ValueError("RemoteEngine needs at least one server")
        self.loop = EventLoopThread()
        self.pool = ServerPool.of(configs, stall_s=stall_s, reconnect_s=reconnect_s)
        self.requeued: list[str] = []  # "url: why" for each job a server dropped
        self.timeout = timeout
        self._features: EngineFeatures | None = None
        self._closed = False
        from studio.remote.control import RemoteControls

        self.controls = RemoteControls(self)  # the servers' ControlNets, for the window
        atexit.register(self.close)

    @property
    def servers(self) -> list[Server]:
        return self.pool.servers

    def close(self) -> None:
        """Close the connections and stop the loop (also at exit)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)

        async def close_all() -> None:
            for server in self.pool.servers:
                await server.client.close()

        try:
            self.loop.run(close_all(), timeout=10)
        finally:
            self.loop.close()

    def _run(self, coro: Any) -> Any:
        return self.loop.run(coro, timeout=self.timeout)

    # -- features ----------------------------------------------------------------------------
    @property
    def features(self) -> EngineFeatures:
        """What the first server that answers can do, from its nodes (``/object_info``)."""
        if self._features is None:
            try:
                info = self._run(self._object_info())
            except StudioError as err:
                return EngineFeatures(
                    backend="comfyui", inpainting=False, img2img=False,
                    why_not=tuple((name, str(err)) for name in
                                  ("inpainting", "img2img", "lora", "upscaling",
                                   "regions", "live_mode", "control"))
                    + LOCAL_ONLY)
            self._features = features_from_nodes(info)
        return self._features

    async def _object_info(self) -> dict[str, Any]:
        error: StudioError | None = None
        for server in self.pool.servers:
            try:
                return await server.client.object_info()
            except StudioError as err:
                error = error or err
        assert error is not None
        raise error

    # -- models ------------------------------------------------------------------------------
    def list_models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        """The servers' models, each with where it lives (``server · folder/name``)."""
        return self._run(self._list_models(kind, refresh))

    async def _list_models(self, kind: str | None, refresh: bool = False) -> list[ModelInfo]:
        found: dict[tuple[str, str], list[str]] = {}
        errors: list[StudioError] = []
        for server in self.pool.servers:
            try:
                await self.pool.checkpoints(server, refresh)
            except StudioError as err:  # not reachable, or not ComfyUI: say so, not "no model"
                errors.append(err)
                continue
            for our_kind, folders in FOLDERS.items():
                if kind is not None and our_kind != kind:
                    continue
                for folder in folders:
                    try:
                        names = await server.client.models(folder)
                    except StudioError:
                        continue
                    for name in names:
                        found.setdefault((our_kind, f"{folder}/{name}"), []).append(server.url)
        if errors and len(errors) == len(self.pool.servers):
            raise errors[0]
        out = []
        for (our_kind, where), urls in found.items():
            folder, name = where.split("/", 1)
            family = guess_family(name) if our_kind == "diffusion" else ""
            out.append(ModelInfo(
                id=name, name=PurePosixPath(name).stem, kind=our_kind, family=family,
                # an edit model: the window offers edit with words (``workflow.edits``)
                recommended=(("edit", True),) if family in wf.EDIT_FAMILIES else (),
                source="comfyui" if folder in ("checkpoints", FOLDERS[our_kind][0])
                else f"comfyui {folder}",
                path=", ".join(f"{u} · {where}" for u in urls)))
        return out

    def models(self, kind: str | None = None, refresh: bool = False) -> list[ModelInfo]:
        """As ``list_models`` (the name ``studio models`` asks a model registry by)."""
        return self.list_models(kind, refresh)

    def default_model(self) -> ModelInfo | None:
        models = self.list_models("diffusion")
        return models[0] if models else None

    def resolve_model(self, model_id: str) -> ModelInfo:
        models = self.list_models()
        return resolve(model_id, models, [s.url for s in self.pool.servers])

    # -- status ------------------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        """The servers as last polled (no network here: the window asks this on its own
        thread; ``server_status`` polls, off it)."""
        try:
            status = self.server_status(poll=False)
        except Exception:  # the loop is closing
            status = []
        parts = [s.text for s in status]
        return DeviceInfo(device=f"comfyui@{self.pool.servers[0].url}", dtype="remote",
                          autocast=False,
                          description="ComfyUI " + "; ".join(parts))

    def server_status(self, poll: bool = True) -> list[ServerStatus]:
        """Each server's state (idle, loading, busy, failed with the reason), GPU, free
        memory and queue; ``poll`` asks the servers that are due first (a few seconds at
        most: a server that does not answer is failed, and asked again with a backoff)."""
        if self._closed:
            return []
        if not poll:
            return self.loop.run(self._status(), timeout=5)
        return self.loop.run(self.pool.poll(), timeout=30)

    async def _status(self) -> list[ServerStatus]:
        return self.pool.status()

    # -- places: several jobs at once, one per server (``studio.core.jobs.runner.Placing``) --
    @property
    def places(self) -> int:
        """How many jobs may run at once: one per server."""
        return len(self.pool.servers)

    def place(self, request: GenerationRequest) -> bool:
        """Hold a free server that has ``request``'s model for it (the job runner starts it
        then); False when none is free now. Reads what the pool knows: no network."""
        if self._closed:
            return False
        return bool(self.loop.run(self.pool.reserve(request.model, id(request),
                                                    pinned_servers(request.device)),
                                  timeout=5))

    def unplace(self, request: GenerationRequest) -> None:
        """Free the server held for ``request`` if its job did not take it."""
        if not self._closed:
            self.loop.run(self.pool.unreserve(id(request)), timeout=5)

    def memory_in_use(self) -> int:
        total = 0
        for server in self.pool.servers:
            for dev in server.client.stats.get("devices", []) or []:
                total += int(dev.get("vram_total", 0) or 0) - int(dev.get("vram_free", 0) or 0)
        return total

    # -- generation --------------------------------------------------------------------------
    def generate(self, request: GenerationRequest,
                 on_step: Callable[[StepProgress], None] | None = None,
                 cancel: CancelToken | None = None) -> GenerationResult:
        """Run ``request`` on the servers; raises ``CancelledError`` or a ``StudioError``."""
        return self._generate_sync(request, on_step, cancel)

    def _generate_sync(self, request: GenerationRequest,
                       on_step: Callable[[StepProgress], None] | None,
                       cancel: CancelToken | None, enlarge_with: str = ""
                       ) -> RemoteGenerationResult:
        cancel = cancel or CancelToken()
        on_step = on_step or (lambda _p: None)
        cancel.raise_if_cancelled()
        steps: queue.Queue[StepProgress] = queue.Queue()
        future = self.loop.submit(self._generate(request, steps, cancel, enlarge_with,
                                                 key=id(request)))
        try:
            while True:
                try:
                    result = future.result(timeout=0.05)
                    break
                except concurrent.futures.TimeoutError:
                    for progress in drain(steps):
                        on_step(progress)
            for progress in drain(steps):
                on_step(progress)
        except BaseException:
            # ``on_step`` raised (the job runner's way to stop a job it cancelled): stop the
            # job on the server too before saying so, so that "cancelled" means the server
            # dropped it (or at least was told to, within CANCEL_WAIT_S).
            if not future.done():
                cancel.cancel()
                with contextlib.suppress(BaseException):
                    future.result(timeout=CANCEL_WAIT_S)
            raise
        return result

    async def _generate(self, request: GenerationRequest, steps: queue.Queue[StepProgress],
                        cancel: CancelToken, enlarge_with: str = "", key: int = 0
                        ) -> RemoteGenerationResult:
        start = time.perf_counter()
        wf._check(request)
        wf.comfy_sampler(request.scheduler)
        lora_models: list[ModelInfo] = []
        if "<lora:" in request.prompt.lower():
            from studio.core.prompt_syntax import with_prompt_loras

            lora_models = await self._list_models("lora")
            request = with_prompt_loras(request, lora_models)
        if request.loras and not lora_models:
            lora_models = await self._list_models("lora")
        models = await self._list_models("diffusion")  # only the folders this job needs
        urls = [s.url for s in self.pool.servers]
        main = resolve(request.model, models, urls)
        checkpoint = main.id
        family = request.family or main.family
        refuse_edit_model(family, main.name)
        folder = "diffusion_models" if main.source.endswith("diffusion_models") else "checkpoints"
        loras = tuple((resolve(lw.name or lw.path, lora_models, urls).id, lw.weight)
                      for lw in request.loras)
        total = request.steps * request.batch_size
        steps.put(StepProgress(0, total, phase="loading"))
        done = [0] * request.batch_size
        seeds = request.seeds
        vseeds = [(int(request.variation_seed or 0) + i) % 2**32
                  for i in range(request.batch_size)]
        only = await self._pinned(request)  # "Use settings" on a server's image: that server
        chunks = split(list(range(request.batch_size)),
                       max(1, len([s for s in self.pool.usable()
                                   if only is None or s.url in only])))
        placed: dict[int, str] = {}  # chunk -> the host running it (for "where")

        async def run_chunk(indices: list[int]) -> tuple[str, dict, list[np.ndarray]]:
            async def on_server(server: Server) -> tuple[str, dict, list[np.ndarray]]:
                for i in indices:
                    done[i] = 0
                placed[id(indices)] = server.url.split("://", 1)[-1]
                steps.put(StepProgress(sum(done), total, phase="loading",
                                       where="on " + ", ".join(dict.fromkeys(placed.values()))))
                return await self._run_on(server, request, Model(checkpoint, family, folder),
                                          loras, [seeds[i] for i in indices], indices, done,
                                          total, steps, cancel, [vseeds[i] for i in indices],
                                          enlarge_with)

            def requeued(server: Server, why: str) -> None:
                self.requeued.append(f"{server.url}: {why}")
                for i in indices:
                    done[i] = 0
                host = placed.pop(id(indices), server.url.split("://", 1)[-1])
                steps.put(StepProgress(sum(done), total, phase="loading",  # waits again
                                       where=f"back in the queue ({host} lost it)"))

            return await self.pool.run(checkpoint, lambda: cancel.cancelled, on_server,
                                       requeued, key=key, only=only)

        import asyncio

        tasks = [asyncio.ensure_future(run_chunk(c)) for c in chunks]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        images = [img for _url, _wf, imgs in results for img in imgs]
        servers = sorted({url for url, _wf, _imgs in results})
        resolved = request.replace(model=checkpoint, family=family,
                                   device="comfyui:" + ",".join(servers), dtype="")
        if request.controls:  # the server's ControlNets that ran, recorded by name
            from studio.remote.control import resolved_controls

            resolved = resolved.replace(controls=resolved_controls(request, results[0][1]))
        return RemoteGenerationResult(request=resolved, images=tuple(images),
                                      seconds=time.perf_counter() - start,
                                      server=",".join(servers),
                                      workflows=tuple(w for _u, w, _i in results),
                                      counts=tuple(len(i) for _u, _w, i in results))

    async def _pinned(self, request: GenerationRequest) -> frozenset[str] | None:
        """The servers a request made there is pinned to (its ``device``: ``comfyui:URL``,
        as "Use settings" on a server's image keeps it), None when it is not pinned. Raises
        in one line, naming the servers that are connected, when none of them is: the job
        never runs silently elsewhere."""
        import asyncio

        only = pinned_servers(request.device)
        if only is None:
            return None
        ours = [s for s in self.pool.servers if s.url in only]
        for server in ours:
            if server.failed or not server.polled:  # asked (again) now: it may be back
                try:
                    await asyncio.wait_for(server.client.system_stats(), STATUS_TIMEOUT_S)
                except (StudioError, asyncio.TimeoutError) as err:
                    self.pool.mark_failed(server, err.message if isinstance(err, StudioError)
                                          else f"{server.url} did not answer")
                    continue
                server.polled = True
                if server.failed:
                    await self.pool._recovered(server)
        if any(not s.failed for s in ours):
            return only
        hosts = ", ".join(sorted(u.split("://", 1)[-1] for u in only))
        why = "; ".join(s.failed.rstrip(".") for s in ours if s.failed)
        others = [s.url.split("://", 1)[-1] for s in self.pool.servers
                  if s.url not in only and not s.failed]
        raise ServerUnreachableError(
            f"This image was made on {hosts}, which is not connected"
            + (f" ({why})" if why else "") + "; "
            + (f"connected: {', '.join(others)} (pick the model again to run it there)."
               if others else "no other server is connected."))

    async def _run_on(self, server: Server, request: GenerationRequest, model: Model,
                      loras: tuple[tuple[str, float], ...], seeds: list[int],
                      indices: list[int], done: list[int], total: int,
                      steps: queue.Queue[StepProgress], cancel: CancelToken,
                      vseeds: list[int], enlarge_with: str = ""
                      ) -> tuple[str, dict, list[np.ndarray]]:
        client = server.client
        info = await client.object_info()
        samplers = tuple(_choices(info, "KSampler", "sampler_name"))
        needed = [n for key in _features_used(request, model.family, enlarge_with)
                  for n in wf.REQUIRED_NODES[key] if n not in info]
        if needed:
            raise ServerModelMissingError(
                f"The server at {client.url} lacks the node(s) {', '.join(dict.fromkeys(needed))}"
                " this job needs.", hint="Update ComfyUI on the server.")
        encoders: tuple[str, ...] = ()
        vae = ""
        if model.folder == "diffusion_models":
            encoders, vae, missing = wf.companions(
                model.family, await client.models("text_encoders"), await client.models("vae"))
            if missing:
                raise ServerModelMissingError(
                    f"{model.name} on {client.url} needs " + "; ".join(missing) + ".",
                    hint="See `studio servers --check URL`.")
        init = mask = ""
        if request.task in ("img2img", "inpaint") and request.init_image is not None:
            pixels = request.init_image.to_array()
            # a hires fix sends the small image; the server enlarges it
            width, height = ((pixels.shape[1], pixels.shape[0]) if enlarge_with else
                             (request.width, request.height))
            init = await client.upload(encode_png(_fit(pixels, width, height)))
        if request.task == "inpaint" and request.mask is not None:
            mask = await client.upload(encode_png(_fit(request.mask.to_array(), request.width,
                                                       request.height, mask=True)))
        from studio.remote.regions import upload_masks

        region_masks = await upload_masks(client, request)  # () without regions
        from studio.remote.control import server_controls

        controls = await server_controls(client, request, model.family, model.name)
        graph = wf.build(request, wf.Inputs(model.name, loras, init, mask, samplers,
                                            family=model.family, folder=model.folder,
                                            text_encoders=encoders, vae=vae,
                                            enlarge_with=enlarge_with, regions=region_masks,
                                            controls=controls),
                         seeds=seeds, variation_seeds=vseeds)
        sampler_ids = wf.sampler_nodes(graph)
        current = [0]

        def on_progress(p: Progress) -> None:
            if p.phase == "node":
                if p.node in sampler_ids:
                    current[0] = sampler_ids.index(p.node)
                    if current[0] == 0:
                        steps.put(StepProgress(sum(done), total, phase="encoding"))
                elif graph.get(p.node, {}).get("class_type") == "VAEDecode" and \
                        sampler_ids.index(_sampler_of(graph, p.node)) == len(sampler_ids) - 1:
                    steps.put(StepProgress(sum(done), total, phase="decoding"))
                return
            if p.preview is not None:
                steps.put(StepProgress(sum(done), total, preview=p.preview))
                return
            if p.node in sampler_ids:
                done[indices[sampler_ids.index(p.node)]] = min(p.value, request.steps)
                steps.put(StepProgress(sum(done), total))

        outputs = await client.run(graph, on_progress, lambda: cancel.cancelled)
        images = []
        max_side = max(request.width, request.height) * 4
        for node_id in wf.output_nodes(graph):
            for ref in outputs.get(node_id, {}).get("images", []):
                images.append(await client.fetch_image(ref, max_side=max_side))
        if len(images) != len(seeds):
            raise StudioError(f"{client.url} returned {len(images)} images for {len(seeds)}.")
        cancel.raise_if_cancelled()
        return client.url, graph, images


    # -- hires fix -----------------------------------------------------------------------------
    def hires_fix(self, image: np.ndarray, values: dict[str, Any],
                  on_step: Callable[[StepProgress], None] | None = None,
                  cancel: CancelToken | None = None) -> np.ndarray:
        """Upscale with "Refine" (a hires fix) in one workflow on a server: ``image`` enlarged
        ``scale`` times with the server's upscale ``model`` (or Lanczos), then sampled again
        at that size with denoise = ``strength``; ``values`` are the local engine's
        (``UpscaleSettings``: scale, model, strength, prompt, negative_prompt, refine_model,
        steps, seed). The server samples the whole image at once, not in tiles."""
        import math

        from studio.core.document.pixels import Pixels
        from studio.core.errors import InvalidRequestError
        from studio.core.jobs.request import MAX_SIDE

        scale = float(values.get("scale", 2.0))
        strength = float(values.get("strength", 0.3))
        if not 1.0 <= scale <= 8.0:
            raise InvalidRequestError("The upscale factor must be between 1 and 8.")
        if not 0.0 < strength <= 1.0:
            raise InvalidRequestError("The refine strength must be above 0 and at most 1.")
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        sampled = tuple(max(8, math.ceil(side / 8) * 8) for side in size)
        if max(sampled) > MAX_SIDE:
            raise InvalidRequestError(f"{size[0]}x{size[1]} is too large to refine on a server "
                                      f"(at most {MAX_SIDE} pixels a side).")
        name = str(values.get("model", "") or "")
        upscalers = self.list_models("upscaler")
        if name.lower() == "lanczos" or (not name and not upscalers):
            enlarge = "lanczos"
        else:
            enlarge = resolve(name, upscalers, [s.url for s in self.pool.servers]).id \
                if name else upscalers[0].id
        refine_model = str(values.get("refine_model", "") or "")
        if not refine_model:
            default = self.default_model()
            if default is None:
                raise ServerModelMissingError("The refine needs a diffusion model; the server "
                                              "has none.")
            refine_model = default.id
        # img2img runs int(steps * strength) steps: never let that round down to none.
        steps = max(int(values.get("steps", 20) or 20), math.ceil(1.0 / strength))
        request = GenerationRequest(
            prompt=str(values.get("prompt", "")),
            negative_prompt=str(values.get("negative_prompt", "")), model=refine_model,
            seed=int(values.get("seed", 0) or 0), steps=steps, width=sampled[0],
            height=sampled[1], task="img2img", strength=strength,
            init_image=Pixels.from_array(np.ascontiguousarray(image[..., :3])))
        result = self._generate_sync(request, on_step, cancel, enlarge)
        out = result.images[0]
        if out.shape[:2] != (size[1], size[0]):
            from PIL import Image

            out = np.asarray(Image.fromarray(out).resize(size, Image.LANCZOS), dtype=np.uint8)
        return out

    # -- upscaling -----------------------------------------------------------------------------
    def upscale(self, image: np.ndarray, model: str, scale: float,
                on_step: Callable[[StepProgress], None] | None = None,
                cancel: CancelToken | None = None) -> np.ndarray:
        """``image`` enlarged by ``scale`` with the server upscale ``model`` ("" = the first,
        "lanczos" = no model), resized to exactly ``scale`` times with Lanczos after it."""
        cancel = cancel or CancelToken()
        on_step = on_step or (lambda _p: None)
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if model.lower() != "lanczos":
            names = [m for m in self.list_models("upscaler")]
            if not names:
                raise ServerModelMissingError("The server has no upscale models.",
                                              hint="Put one in its models/upscale_models.")
            chosen = resolve(model, names, [s.url for s in self.pool.servers]) if model \
                else names[0]
            on_step(StepProgress(0, 1, phase="loading"))
            image = self.loop.submit(self._upscale(image, chosen.id, cancel)).result()
            on_step(StepProgress(1, 1))
        from PIL import Image

        out = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.LANCZOS)
        return np.asarray(out, dtype=np.uint8)

    async def _upscale(self, image: np.ndarray, model: str, cancel: CancelToken) -> np.ndarray:
        server = self.pool.servers[0]
        for candidate in self.pool.usable():
            if not candidate.busy:
                server = candidate
                break
        name = await server.client.upload(encode_png(image))
        graph = wf.upscale(name, model)
        outputs = await server.client.run(graph, lambda _p: None, lambda: cancel.cancelled)
        for node_id in wf.output_nodes(graph):
            for ref in outputs.get(node_id, {}).get("images", []):
                return await server.client.fetch_image(ref, max_side=16384)
        raise StudioError(f"{server.url} returned no upscaled image.")


def features_from_nodes(info: dict[str, Any]) -> EngineFeatures:
    """What a server can do, from its node classes (``/object_info``)."""
    from studio.core.samplers import SCHEDULER_NAMES

    def has(feature: str) -> bool:
        return all(node in info for node in wf.REQUIRED_NODES[feature])

    samplers = set(_choices(info, "KSampler", "sampler_name"))
    schedulers = tuple(name for name in SCHEDULER_NAMES
                       if name in wf.SCHEDULERS and wf.SCHEDULERS[name][0] in samplers)
    why = list(LOCAL_ONLY)
    for feature, key in (("img2img", "img2img"), ("inpainting", "inpainting"),
                         ("lora", "lora"), ("upscaling", "upscaling")):
        if not has(key):
            missing = [n for n in wf.REQUIRED_NODES[key] if n not in info]
            why.append((feature, f"The server lacks the node(s) {', '.join(missing)}."))
    families: tuple[str, ...] = ("sd1", "sd2", "sdxl") if has("txt2img") else ()
    for family in wf.FLOW_FAMILIES:  # Flux, SD3: whole checkpoints, or models alone
        if has("txt2img") and has(family):
            families += (family,)
        else:
            missing = [n for n in wf.REQUIRED_NODES[family] + wf.REQUIRED_NODES["txt2img"]
                       if n not in info]
            why.append((family, f"The server lacks the node(s) {', '.join(missing)} "
                                f"({family} workflows); update ComfyUI."))
    if not has("regions"):
        missing = [n for n in wf.REQUIRED_NODES["regions"] if n not in info]
        why.append(("regions", f"The server lacks the node(s) {', '.join(missing)} "
                               "(regional prompts); update ComfyUI."))
    live_why = live_mode_reason(info)
    if live_why:
        why.append(("live_mode", live_why))
    why.extend(control_reasons(info))
    if not has("variation"):
        missing = [n for n in wf.REQUIRED_NODES["variation"] if n not in info]
        why.append(("variation", f"The server lacks the node(s) {', '.join(missing)} "
                                 "(variation seeds); update ComfyUI."))
    return EngineFeatures(
        backend="comfyui", families=families, schedulers=schedulers,
        inpainting=has("inpainting"), img2img=has("img2img"), control=has("control"),
        lora=has("lora"),
        prompt_sliders=False, latent_sliders=False, example_directions=False,
        upscaling=has("upscaling"), model_management=False, live_mode=not live_why,
        regions=has("regions") and has("txt2img"), why_not=tuple(why))


def control_reasons(info: dict[str, Any]) -> list[tuple[str, str]]:
    """Why control layers, or some control kinds, are off on a server with these nodes."""
    from studio.remote.control import kinds_off

    out = kinds_off()
    missing = [n for n in wf.REQUIRED_NODES["control"] if n not in info]
    if missing:
        out.append(("control", f"The server lacks the node(s) {', '.join(missing)} "
                               "(control layers); update ComfyUI."))
    return out


def live_mode_reason(info: dict[str, Any]) -> str:
    """Why live painting cannot run on a server with these node classes ("" when it can):
    each update is an image to image workflow (``studio.ui.live``), sent on the preview
    channel (a newer stroke removes the queued update from the server's queue and
    interrupts the running one)."""
    missing = [n for n in wf.REQUIRED_NODES["txt2img"] + wf.REQUIRED_NODES["img2img"]
               if n not in info]
    if missing:
        return (f"The server lacks the node(s) {', '.join(dict.fromkeys(missing))} live "
                "painting needs (image to image); update ComfyUI.")
    return ""


def pinned_servers(device: str) -> frozenset[str] | None:
    """The server addresses a request's ``device`` names (``comfyui:URL[,URL]``, as a
    server's result records where it ran); None for a request not made on a server."""
    if not device.startswith("comfyui:"):
        return None
    urls = [u.strip().rstrip("/") for u in device[len("comfyui:"):].split(",") if u.strip()]
    return frozenset(urls) or None


def resolve(model_id: str, models: list[ModelInfo], urls: list[str]) -> ModelInfo:
    """The server model ``model_id`` names: its exact name, or its file stem."""
    wanted = model_id.strip().replace("\\", "/")
    stem = PurePosixPath(wanted).stem.lower()
    for match in (lambda m: m.id == wanted, lambda m: m.id.lower() == wanted.lower(),
                  lambda m: m.name.lower() == stem):
        for model in models:
            if match(model):
                return model
    where = ", ".join(urls)
    raise ServerModelMissingError(
        f"The model {model_id!r} is not on the server ({where}).",
        hint="Put it in the server's models folder, or see `studio models` for what it has.")


def split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous chunks (as even as they go; no empty chunk)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _choices(info: dict[str, Any], node: str, name: str) -> list[str]:
    try:
        spec = info[node]["input"]["required"][name]
    except (KeyError, TypeError):
        return []
    options = spec[0]
    if isinstance(options, str) and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options", [])  # COMBO written as ("COMBO", {"options": [...]})
    return [str(o) for o in options] if isinstance(options, list) else []


def _sampler_of(graph: dict[str, dict], decode_id: str) -> str:
    return str(graph[decode_id]["inputs"]["samples"][0])


def _fit(array: np.ndarray, width: int, height: int, mask: bool = False) -> np.ndarray:
    """The init image (RGB) or mask (L, white: repaint) at the request's size."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(array))
    img = img.convert("L" if mask else "RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.NEAREST if mask else Image.LANCZOS)
    if mask:
        img = img.convert("RGB")  # LoadImageMask reads the red channel
    return np.asarray(img, dtype=np.uint8)


__all__ = ["RemoteEngine", "RemoteGenerationResult", "features_from_nodes", "CancelledError"]
