"""Edit with words: instruction-editing pipelines (Flux Kontext, Flux 2 Klein) as an
image-to-image task.

An edit family (``FamilySpec.edit``) takes the init image (the selected layer or the
selection's area in the window, ``--init-image`` on the command line) and the prompt as an
instruction ("make the hair red"), and draws a new image of the request's size. The request
stays an ``img2img`` request, so the history, the image's metadata and "Use settings" carry
it as they carry any image to image; its strength is not used (the pipeline has none).
"""

from __future__ import annotations

from typing import Any

from studio.engine.models.families import spec_for


def is_edit_family(family: str) -> bool:
    """Whether ``family``'s image to image is an edit with words."""
    return bool(family) and spec_for(family).edit


def edit_args(req: Any) -> dict[str, Any]:
    """The image arguments of an edit: the init image at the request's size, and that size
    kept (Kontext would otherwise move both to its preferred resolutions and a 1-megapixel
    area: ``_auto_resize`` off, ``max_area`` the request's; Flux 2 Klein takes the size as
    given)."""
    from studio.engine.calls import _init_image

    args = {"image": _init_image(req), "height": req.height, "width": req.width}
    args.update(keep_size(req))
    if req.family == "flux-kontext":
        args["_auto_resize"] = False
    return args


def keep_size(req: Any) -> dict[str, Any]:
    """What keeps an edit model at the request's size, with or without an image: Kontext
    scales any size to its ``max_area`` (1 megapixel by default)."""
    return {"max_area": req.width * req.height} if req.family == "flux-kontext" else {}
