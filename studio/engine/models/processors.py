"""Multimodal processors that load without torchvision.

Qwen-Image-Edit's pipeline reads the image it edits through Qwen2.5-VL, whose processor
(transformers' ``Qwen2VLProcessor``) holds an image processor, a tokenizer and a *video*
processor. transformers builds the video processor only with torchvision, which Latent
Studio does not install (PyPI's torchvision fails to import beside a CPU build of torch), so
``from_pretrained`` of a Qwen-Image-Edit folder fails on the processor after the weights have
loaded. An edit reads one still image and never a video: ``StillImageQwenProcessor`` is
transformers' own processor with its PIL image processor (transformers' own fallback when
torchvision is missing) and the tokenizer of the folder, without the video part. Where
torchvision is installed, diffusers loads the folder's processor as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The processors of a ``model_index.json`` built here when torchvision is missing.
QWEN_VL_PROCESSORS = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def still_image_processor_class() -> type:
    """transformers' Qwen2-VL processor without its video processor (defined on first use:
    transformers is imported only when a model loads)."""
    global _STILL
    if _STILL is not None:
        return _STILL
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class StillImageQwenProcessor(Qwen2VLProcessor):
        """``Qwen2VLProcessor`` for still images: the same text and image processing (its
        ``__call__`` is transformers'), no video processor (``videos=`` is refused by it)."""

        def __init__(self, image_processor: Any = None, tokenizer: Any = None,
                     chat_template: Any = None, **kwargs: Any) -> None:
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = (getattr(tokenizer, "image_token_id", None)
                                   or tokenizer.convert_tokens_to_ids(self.image_token))
            self.video_token_id = (getattr(tokenizer, "video_token_id", None)
                                   or tokenizer.convert_tokens_to_ids(self.video_token))
            ProcessorMixin.__init__(self, image_processor, tokenizer,
                                    chat_template=chat_template)

    _STILL = StillImageQwenProcessor
    return _STILL


_STILL: type | None = None


def load_still_image_processor(folder: Path) -> Any:
    """The processor saved in ``folder`` (a pipeline's ``processor/``), without its video
    part: the folder's image processor settings read by transformers' PIL Qwen2-VL image
    processor, and its tokenizer."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    image = Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True)
    return still_image_processor_class()(image, tokenizer,
                                         chat_template=getattr(tokenizer, "chat_template", None))


def processors_without_video(path: Path, index: dict[str, Any]) -> dict[str, Any]:
    """The pipeline components of ``index`` (a ``model_index.json``) that are Qwen2-VL
    processors, built without their video processor where torchvision is missing (empty
    where it is installed: diffusers then loads them as saved)."""
    names = [name for name, value in index.items()
             if isinstance(value, list) and len(value) == 2 and value[0] == "transformers"
             and value[1] in QWEN_VL_PROCESSORS and (path / name).is_dir()]
    if not names or torchvision_available():
        return {}
    return {name: load_still_image_processor(path / name) for name in names}
