"""X/Y/Z grids: vary up to three settings, one request per cell, one labelled image.

An axis is written as A1111 users know it, ``name=v1,v2,...``:

* ``seed=1,2,3`` (also ``seed=1-4``), ``steps=10,20``, ``guidance=3,7`` (``cfg`` too),
  ``scheduler=Euler,DPM++ 2M Karras`` (``sampler`` too), ``strength=0.3,0.6``,
  ``clip_skip=1,2``;
* ``S/R=cat,dog,fox``: prompt search/replace; the first value is searched for in the prompt
  and the negative prompt and each value replaces it (the first cell keeps the prompt);
* ``slider:<slider id>=-1,0,1``: the value of a latent slider;
* ``lora:<name>=0,0.5,1``: the weight of a LoRA of the request (or of a ``<lora:name:w>`` tag
  in the prompt).

``plan_grid`` gives the cells (each a complete ``GenerationRequest`` submitted as its own job);
``grid_image`` lays the results out with the axis labels.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.core.errors import InvalidRequestError, StudioError
from studio.core.jobs.events import GenerationResult, JobCancelled, JobEvent, JobFailed, JobFinished
from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue

MAX_CELLS = 400
_ALIASES = {"cfg": "guidance", "cfg_scale": "guidance", "sampler": "scheduler",
            "sr": "S/R", "prompt_sr": "S/R", "prompt s/r": "S/R", "s/r": "S/R",
            "clip skip": "clip_skip", "denoise": "strength"}
_KINDS = ("seed", "steps", "guidance", "scheduler", "strength", "clip_skip", "S/R")


class GridError(InvalidRequestError):
    kind = "grid"


@dataclass(frozen=True)
class GridAxis:
    """One axis: what varies (``kind``, plus ``target`` for sliders and LoRAs) and its values."""

    kind: str  # one of _KINDS, "slider" or "lora"
    values: tuple[str, ...]
    target: str = ""

    @property
    def title(self) -> str:
        """What the axis varies, in words: "CFG", "blonde hair", "LoRA ink"."""
        if self.kind == "slider":
            return _slider_words(self.target)
        if self.kind == "lora":
            name = re.split(r"[\\/]", self.target)[-1].rsplit(".", 1)[0]
            return f"LoRA {name}"
        return {"guidance": "CFG", "S/R": "prompt S/R", "clip_skip": "clip skip"}.get(
            self.kind, self.kind)

    def label(self, index: int) -> str:
        """A cell's value in words: "seed 2", "20 steps", "blonde hair -2", "Euler a"."""
        value = self.values[index]
        if self.kind in ("S/R", "scheduler"):
            return value
        if self.kind == "steps":
            return f"{value} steps"
        return f"{self.title} {value}"

    def apply(self, request: GenerationRequest, index: int) -> GenerationRequest:
        """``request`` with this axis set to its value ``index``."""
        value = self.values[index]
        try:
            if self.kind == "seed":
                return request.replace(seed=int(value))
            if self.kind == "steps":
                return request.replace(steps=int(value))
            if self.kind == "guidance":
                return request.replace(guidance=float(value))
            if self.kind == "strength":
                return request.replace(strength=float(value))
            if self.kind == "clip_skip":
                return request.replace(clip_skip=int(value))
            if self.kind == "scheduler":
                return request.replace(scheduler=value)
            if self.kind == "S/R":
                search = self.values[0]
                return request.replace(prompt=request.prompt.replace(search, value),
                                       negative_prompt=request.negative_prompt.replace(
                                           search, value))
            if self.kind == "slider":
                return _with_slider(request, self.target, float(value))
            if self.kind == "lora":
                return _with_lora_weight(request, self.target, float(value))
        except ValueError as err:
            if isinstance(err, StudioError):
                raise
            raise GridError(f"{self.title}: {value!r} is not a valid value.") from None
        raise GridError(f"Unknown grid axis {self.kind!r}.")


def _slider_words(slider_id: str) -> str:
    """A slider's name as the user says it: "blonde hair" for ``vae:hair=blonde``,
    "smile" for ``smile``, "young ↔ old" for ``prompt:old|young``."""
    from studio.core.sliders.specs import slider_for_id

    try:
        spec = slider_for_id(slider_id)
    except InvalidRequestError:
        return slider_id
    key, sep, value = spec.attribute.partition("=")
    if sep and spec.space in ("vae", "gan"):
        return f"{value} {key}"
    return spec.label[:1].lower() + spec.label[1:] if spec.label[1:2].islower() else spec.label


def _with_slider(request: GenerationRequest, slider_id: str, value: float) -> GenerationRequest:
    sliders = list(request.sliders)
    for i, s in enumerate(sliders):
        if s.slider_id == slider_id:
            sliders[i] = SliderValue(s.slider_id, value, s.space, s.payload)
            return request.replace(sliders=tuple(sliders))
    # Not in the request yet: the slider its id names (a starter, or a self-describing
    # "vae:hair=blonde" id), so the engine knows its space and direction.
    from studio.core.sliders.specs import apply_sliders, slider_for_id

    try:
        spec = slider_for_id(slider_id)
    except InvalidRequestError as err:
        raise GridError(err.message, hint=err.hint) from None
    return apply_sliders(request, [(spec, value)])


def _lora_matches(lora: LoraWeight, name: str) -> bool:
    stem = re.split(r"[\\/]", lora.path)[-1].rsplit(".", 1)[0]
    return name.lower() in (lora.name.lower(), stem.lower(), lora.path.lower())


def _with_lora_weight(request: GenerationRequest, name: str, weight: float) -> GenerationRequest:
    loras = list(request.loras)
    found = False
    for i, lora in enumerate(loras):
        if _lora_matches(lora, name):
            loras[i] = LoraWeight(lora.path, weight, lora.name)
            found = True
    tag = re.compile(rf"<(lora|lyco):{re.escape(name)}(:[^>]*)?>", re.IGNORECASE)
    prompt = request.prompt
    if tag.search(prompt):
        prompt = tag.sub(f"<lora:{name}:{weight:g}>", prompt)
        found = True
    if not found:
        raise GridError(f"The grid varies the LoRA {name!r}, but the request does not use it.",
                        hint=f"Add <lora:{name}:1> to the prompt.")
    return request.replace(loras=tuple(loras), prompt=prompt)


def _expand(values: str, kind: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values.split(","):
        v = raw.strip()
        if not v:
            continue
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", v)
        if kind in ("seed", "steps", "clip_skip") and m:
            a, b = int(m.group(1)), int(m.group(2))
            step = 1 if b >= a else -1
            out.extend(str(i) for i in range(a, b + step, step))
        else:
            out.append(v)
    return tuple(out)


def parse_axis(spec: str) -> GridAxis:
    """An axis from ``"name=v1,v2,..."`` (see the module docstring)."""
    if "=" not in spec:
        raise GridError(f"A grid axis looks like seed=1,2,3, not {spec!r}.")
    if spec.strip().lower().startswith(("slider:", "lora:")):
        # Weights are numbers; a latent slider's id has its own "=" (vae:hair=blonde).
        name, values = spec.rsplit("=", 1)
    else:
        name, values = spec.split("=", 1)
    name = name.strip()
    target = ""
    lowered = name.lower()
    if lowered.startswith(("slider:", "lora:")):
        kind, target = name.split(":", 1)
        kind, target = kind.lower(), target.strip()
        if not target:
            raise GridError(f"Name the {kind} in {spec!r}, e.g. {kind}:smile=0,1.")
    else:
        kind = _ALIASES.get(lowered, lowered)
        if kind not in _KINDS:
            raise GridError(f"Cannot vary {name!r} in a grid.",
                            hint="Axes: seed, steps, guidance, scheduler, strength, clip_skip, "
                                 "S/R, slider:<id>, lora:<name>.")
    vals = _expand(values, kind)
    if not vals:
        raise GridError(f"The grid axis {name!r} has no values.")
    return GridAxis(kind, vals, target)


@dataclass(frozen=True)
class GridCell:
    """One cell: its position (x, y, z) and the request that makes it."""

    x: int
    y: int
    z: int
    request: GenerationRequest


@dataclass(frozen=True)
class GridPlan:
    """The axes and every cell's request, in row-major order (z, then y, then x)."""

    base: GenerationRequest
    axes: tuple[GridAxis, ...]
    cells: tuple[GridCell, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(columns, rows, panels)."""
        sizes = [len(a.values) for a in self.axes] + [1, 1]
        return sizes[0], sizes[1], sizes[2]

    def caption(self, cell: GridCell) -> str:
        return " · ".join(self.axes[i].label(v) for i, v in enumerate((cell.x, cell.y, cell.z))
                          if i < len(self.axes))


def plan_grid(base: GenerationRequest, axes: Sequence[GridAxis | str]) -> GridPlan:
    """Every cell's request for ``axes`` (1 to 3, x first).

    Raises
    ------
    GridError
        No axis or more than three, too many cells, or a value the request refuses.
    """
    parsed = tuple(a if isinstance(a, GridAxis) else parse_axis(a) for a in axes)
    if not 1 <= len(parsed) <= 3:
        raise GridError("A grid has one to three axes (x, y, z).")
    for axis in parsed:
        if axis.kind == "S/R" and axis.values[0] not in (base.prompt + base.negative_prompt):
            raise GridError(f"Prompt S/R: {axis.values[0]!r} is not in the prompt.",
                            hint="The first S/R value is the text to replace.")
    count = int(np.prod([len(a.values) for a in parsed]))
    if count > MAX_CELLS:
        raise GridError(f"That grid has {count} cells; at most {MAX_CELLS}.")
    base1 = base.replace(batch_size=1)
    ranges = [range(len(a.values)) for a in parsed] + [range(1)] * (3 - len(parsed))
    cells = []
    for z, y, x in itertools.product(ranges[2], ranges[1], ranges[0]):
        req = base1
        for axis, index in zip(parsed, (x, y, z), strict=False):
            try:
                req = axis.apply(req, index)
            except InvalidRequestError as err:
                if isinstance(err, GridError):
                    raise
                raise GridError(f"{axis.label(index)}: {err.message}") from None
        cells.append(GridCell(x, y, z, req))
    return GridPlan(base1, parsed, tuple(cells))


# -- the image ----------------------------------------------------------------------------
def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    box = font.getbbox(text) if text else (0, 0, 0, 0)
    return int(box[2] - box[0]), int(box[3] - box[1])


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def grid_image(plan: GridPlan, images: Mapping[int, np.ndarray] | Sequence[np.ndarray | None],
               *, background: tuple[int, int, int] = (255, 255, 255),
               text_color: tuple[int, int, int] = (0, 0, 0),
               max_cell: int = 512, min_cell: int = 128) -> np.ndarray:
    """The labelled grid as ``HxWx3`` uint8: x labels on top, y labels on the left, one panel
    per z value with its label above. ``images`` is indexed like ``plan.cells``; a missing
    cell (cancelled, failed) is left grey. Images under ``min_cell`` pixels are enlarged by a
    whole factor (sharp pixels), over ``max_cell`` scaled down. Labels are wrapped (long
    words broken) and their font shrunk until every label fits its own column or row."""
    get = images.get if isinstance(images, Mapping) else (
        lambda i: images[i] if i < len(images) else None)  # type: ignore[index]
    present = [get(i) for i in range(len(plan.cells))]
    sample = next((im for im in present if im is not None), None)
    cw, ch = (sample.shape[1], sample.shape[0]) if sample is not None else (256, 256)
    if max(cw, ch) > max_cell:
        f = max_cell / max(cw, ch)
        cw, ch = max(1, round(cw * f)), max(1, round(ch * f))
    elif max(cw, ch) < min_cell:
        factor = -(-min_cell // max(cw, ch))
        cw, ch = cw * factor, ch * factor
    cols, rows, panels = plan.shape
    x_labels = [plan.axes[0].label(i) for i in range(cols)]
    y_labels = [plan.axes[1].label(i) for i in range(rows)] if len(plan.axes) > 1 else [""]
    z_labels = [plan.axes[2].label(i) for i in range(panels)] if len(plan.axes) > 2 else [""]
    pad = max(4, cw // 32)
    left_w = cw if any(y_labels) else 0
    layout = _label_layout(x_labels, y_labels, z_labels, cw, ch, left_w, pad,
                           cols * cw + left_w)
    font, line_h, lines_x, lines_y, lines_z = layout
    if any(y_labels):  # the row labels' column: as wide as its widest line, at most a cell
        left_w = min(cw, max(_text_size(font, t)[0] for ls in lines_y for t in ls) + 2 * pad)
    head_h = max(len(lines) for lines in lines_x) * line_h + 2 * pad
    z_h = max(len(lines) for lines in lines_z) * line_h + 2 * pad if any(z_labels) else 0
    panel_h = z_h + head_h + rows * ch
    width = left_w + cols * cw
    sheet = Image.new("RGB", (width, panels * panel_h), background)
    draw = ImageDraw.Draw(sheet)
    for i, cell in enumerate(plan.cells):
        top = cell.z * panel_h + z_h + head_h + cell.y * ch
        left = left_w + cell.x * cw
        im = present[i]
        if im is None:
            draw.rectangle([left, top, left + cw - 1, top + ch - 1], fill=(128, 128, 128))
            continue
        tile = Image.fromarray(np.asarray(im)).convert("RGB")
        if tile.size != (cw, ch):
            enlarge = tile.width < cw and cw % tile.width == 0 and ch % tile.height == 0
            tile = tile.resize((cw, ch), Image.Resampling.NEAREST if enlarge
                               else Image.Resampling.LANCZOS)
        sheet.paste(tile, (left, top))

    def centred(lines: list[str], x0: int, span: int, y: int) -> None:
        for line in lines:
            draw.text((x0 + (span - _text_size(font, line)[0]) // 2, y), line, fill=text_color,
                      font=font)
            y += line_h

    for z in range(panels):
        base = z * panel_h
        if z_labels[z]:
            centred(lines_z[z], 0, width, base + pad)
        for x, lines in enumerate(lines_x):
            centred(lines, left_w + x * cw, cw, base + z_h + pad)
        for yi, lines in enumerate(lines_y):
            if not y_labels[yi]:
                continue
            y = base + z_h + head_h + yi * ch + (ch - len(lines) * line_h) // 2
            for line in lines:
                draw.text((pad, y), line, fill=text_color, font=font)
                y += line_h
    return np.asarray(sheet)


def _label_layout(x_labels: list[str], y_labels: list[str], z_labels: list[str], cw: int,
                  ch: int, left_w: int, pad: int, width: int) -> tuple[Any, ...]:
    """The largest font (28 px down to 8) at which every label fits: x labels in at most 3
    lines of a column, y labels within a row, z labels in 2 lines across the panel."""
    size = max(12, min(28, cw // 12))
    while True:
        font = _font(size)
        line_h = _text_size(font, "Hg")[1] + 4
        lines_x = [_wrap(t, font, cw - pad) for t in x_labels]
        lines_y = [_wrap(t, font, left_w - 2 * pad) for t in y_labels]
        lines_z = [_wrap(t, font, width - 2 * pad) for t in z_labels]
        fits = (max(len(ls) for ls in lines_x) <= 3
                and max(len(ls) for ls in lines_y) * line_h <= ch
                and max(len(ls) for ls in lines_z) <= 2)
        if fits or size <= 8:
            return font, line_h, lines_x, lines_y, lines_z
        size -= 2


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          width: int) -> list[str]:
    """``text`` in lines of at most ``width`` pixels; a word longer than a line is broken."""
    width = max(1, width)
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if _text_size(font, trial)[0] <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        while _text_size(font, word)[0] > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and _text_size(font, word[:cut])[0] > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return [*lines, line] if line else lines or [""]


# -- running ------------------------------------------------------------------------------
class GridRun:
    """A grid's cells queued on a ``JobRunner``, one render job each, and their results.

    ``on_cell(index, result_or_None)`` is called on the engine thread as each cell finishes,
    fails or is cancelled (the GUI turns it into a signal and adds the image to the gallery);
    ``cancel()`` cancels every cell not yet done. ``image()`` lays out what has finished.
    """

    def __init__(self, runner: Any, plan: GridPlan,
                 on_cell: Callable[[int, GenerationResult | None], None] | None = None) -> None:
        self.plan = plan
        self._runner = runner
        self._on_cell = on_cell
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._jobs: dict[int, int] = {}
        self.results: dict[int, GenerationResult] = {}
        self.errors: dict[int, str] = {}
        self._remaining = len(plan.cells)
        runner.add_listener(self._on_event)
        with self._lock:  # events of early jobs wait until every job id is known
            for i, cell in enumerate(plan.cells):
                label = f"grid {i + 1}/{len(plan.cells)}: {plan.caption(cell)}"
                self._jobs[runner.submit(cell.request, label=label)] = i

    @property
    def job_ids(self) -> list[int]:
        return list(self._jobs)

    def _on_event(self, event: JobEvent) -> None:
        if not isinstance(event, (JobFinished, JobFailed, JobCancelled)):
            return
        with self._lock:
            index = self._jobs.get(event.job_id)
            if index is None:
                return
            if isinstance(event, JobFinished):
                self.results[index] = event.result
            elif isinstance(event, JobFailed):
                self.errors[index] = event.message
            self._remaining -= 1
            last = self._remaining == 0
        if self._on_cell is not None:
            self._on_cell(index, event.result if isinstance(event, JobFinished) else None)
        if last:
            self._runner.remove_listener(self._on_event)
            self._done.set()

    def cancel(self) -> None:
        for job_id in list(self._jobs):
            self._runner.cancel(job_id)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def images(self) -> dict[int, np.ndarray]:
        return {i: r.images[0] for i, r in self.results.items() if r.images}

    def image(self) -> np.ndarray:
        return grid_image(self.plan, self.images())
