"""Build the per-tool metadata fixtures in this folder: small images whose metadata is laid
out the way each tool's writer lays it out (read in their public source; no code copied).

Run from the repository root: ``python tests/data/metadata/build.py``. The built files are
committed; the expected values are written by hand in ``tests/core/test_metadata_tools.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

HERE = Path(__file__).parent
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
IMAGE_DESCRIPTION, MAKE, MODEL = 0x010E, 0x010F, 0x0110


def _image(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, (90, 120, 150))


def png(path: str, texts: dict[str, str], size: tuple[int, int] = (64, 64),
        itxt: dict[str, str] | None = None) -> None:
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    for key, text in (itxt or {}).items():
        info.add_itxt(key, text)
    target = HERE / path
    target.parent.mkdir(parents=True, exist_ok=True)
    _image(size).save(target, pnginfo=info)


def exif_image(path: str, *, ifd0: dict[int, str] | None = None,
               user_comment: bytes | None = None, size: tuple[int, int] = (64, 64)) -> None:
    exif = Image.Exif()
    for tag, text in (ifd0 or {}).items():
        exif[tag] = text
    if user_comment is not None:
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = user_comment
    target = HERE / path
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if target.suffix == ".jpg" else "WEBP"
    _image(size).save(target, format=fmt, exif=exif, quality=80)


def unicode_comment(text: str) -> bytes:
    """A UserComment as piexif writes it for A1111 and most Python tools."""
    return b"UNICODE\x00" + text.encode("utf_16_be")


# -- A1111 family --------------------------------------------------------------------------
FORGE = ("a knight in the rain, cinematic\nNegative prompt: lowres, blurry\n"
         "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG Scale: 6.5, Seed: 3141592653, "
         "Size: 832x1216, Model hash: 6ce0161689, Model: ponyDiffusionV6XL, "
         'Lora hashes: "film: 1a2b3c4d5e6f", Version: f2.0.1v1.10.1-previous-519-g44eb4ea8')
A1111_HIRES = ("a castle on a hill\nNegative prompt: fog\n"
               "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, "
               "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
               "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, "
               "Hires upscaler: Latent, Version: v1.10.1")
A1111_INPAINT = ("a red door\nNegative prompt: text\n"
                 "Steps: 30, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 5, "
                 "Seed: 7, Size: 640x640, Model hash: 6ce0161689, Model: dreamshaper_8, "
                 "Denoising strength: 0.6, Mask blur: 4, Inpaint area: Only masked, "
                 "Version: v1.10.1")
SDNEXT = ("portrait of an old sailor\nNegative prompt: cartoon\n"
          "Steps: 30, Seed: 1234567, Sampler: DPM++ 2M, CFG scale: 4.5, Size-1: 1024, "
          "Size-2: 1024, Size: 1024x1024, Model: juggernautXL_v9, Model hash: c9e3e68f89, "
          "App: SD.Next, Version: 8b2a5b3, Operations: txt2img")

# -- ComfyUI: node-split samplers --------------------------------------------------------
FLUX_GRAPH = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {
        "text": "a lighthouse on a cliff at dawn, volumetric light", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "11": {"class_type": "DualCLIPLoader", "inputs": {
        "clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors",
        "type": "flux"}},
    "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                  "weight_dtype": "default"}},
    "13": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["17", 0],
        "latent_image": ["27", 0]}},
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {"class_type": "BasicScheduler", "inputs": {
        "scheduler": "simple", "steps": 28, "denoise": 1.0, "model": ["30", 0]}},
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0],
                                                   "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 18446744073709551000}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768,
                                                           "batch_size": 1}},
    "30": {"class_type": "ModelSamplingFlux", "inputs": {
        "max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 768,
        "model": ["12", 0]}},
}
TURBO_GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {
        "ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat wearing a tiny hat",
                                                     "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512,
                                                       "batch_size": 1}},
    "5": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
    "6": {"class_type": "SDTurboScheduler", "inputs": {"steps": 1, "denoise": 1.0,
                                                       "model": ["1", 0]}},
    "7": {"class_type": "SamplerCustom", "inputs": {
        "add_noise": True, "noise_seed": 5551212, "cfg": 1.0, "model": ["1", 0],
        "positive": ["2", 0], "negative": ["3", 0], "sampler": ["5", 0], "sigmas": ["6", 0],
        "latent_image": ["4", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "turbo", "images": ["8", 0]}},
}
SDXL_CFG_GUIDER = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
    "2": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "width": 4096, "height": 4096, "crop_w": 0, "crop_h": 0, "target_width": 4096,
        "target_height": 4096, "text_g": "a paper boat on a puddle, macro",
        "text_l": "a paper boat on a puddle, macro", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "width": 4096, "height": 4096, "crop_w": 0, "crop_h": 0, "target_width": 4096,
        "target_height": 4096, "text_g": "blurry", "text_l": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "CFGGuider", "inputs": {"cfg": 5.5, "model": ["1", 0],
                                                "positive": ["2", 0], "negative": ["3", 0]}},
    "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 77}},
    "6": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
    "7": {"class_type": "BasicScheduler", "inputs": {"scheduler": "karras", "steps": 30,
                                                     "denoise": 1.0, "model": ["1", 0]}},
    "8": {"class_type": "EmptyLatentImage", "inputs": {"width": 1152, "height": 896,
                                                       "batch_size": 1}},
    "9": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["5", 0], "guider": ["4", 0], "sampler": ["6", 0], "sigmas": ["7", 0],
        "latent_image": ["8", 0]}},
    "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
    "11": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["10", 0]}},
}
# Text from other nodes: rgthree, Comfyroll, a core string primitive, smZ, concatenation.
TEXT_NODES = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
    "2": {"class_type": "Power Prompt (rgthree)", "inputs": {
        "prompt": "an owl in a library, warm light", "opt_clip": ["1", 1]}},
    "3": {"class_type": "smZ CLIPTextEncode", "inputs": {
        "text": ["2", 2], "parser": "A1111", "mean_normalization": True, "clip": ["1", 1]}},
    "4": {"class_type": "CR Prompt Text", "inputs": {"prompt": "lowres"}},
    "5": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "watermark"}},
    "6": {"class_type": "StringConcatenate", "inputs": {
        "string_a": ["4", 0], "string_b": ["5", 0], "delimiter": ", "}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ["6", 0], "clip": ["1", 1]}},
    "8": {"class_type": "CR Seed", "inputs": {"seed": 123456789012}},
    "9": {"class_type": "KSampler", "inputs": {
        "seed": ["8", 0], "steps": 24, "cfg": 6.0, "sampler_name": "dpmpp_2m_sde",
        "scheduler": "exponential", "denoise": 1.0, "model": ["1", 0], "positive": ["3", 0],
        "negative": ["7", 0], "latent_image": ["10", 0]}},
    "10": {"class_type": "SDXL Empty Latent Image (rgthree)", "inputs": {
        "dimensions": "768 x 1344  (portrait)", "clip_scale": 2.0, "batch_size": 1}},
    "11": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
    "12": {"class_type": "Image Save", "inputs": {"images": ["11", 0]}},
}
IMG2IMG = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "sketch.png", "upload": "image"}},
    "3": {"class_type": "ImageScale", "inputs": {"upscale_method": "lanczos", "width": 768,
                                                 "height": 512, "crop": "center",
                                                 "image": ["2", 0]}},
    "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a watercolor harbour",
                                                     "clip": ["1", 1]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo", "clip": ["1", 1]}},
    "7": {"class_type": "KSampler", "inputs": {
        "seed": 99, "steps": 20, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 0.6, "model": ["1", 0], "positive": ["5", 0], "negative": ["6", 0],
        "latent_image": ["4", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "i2i", "images": ["8", 0]}},
}
INPAINT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_inpainting.safetensors"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "room.png", "upload": "image"}},
    "3": {"class_type": "VAEEncodeForInpaint", "inputs": {
        "grow_mask_by": 6, "pixels": ["2", 0], "vae": ["1", 2], "mask": ["2", 1]}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a potted plant", "clip": ["1", 1]}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
    "6": {"class_type": "KSampler", "inputs": {
        "seed": 4242, "steps": 25, "cfg": 8.0, "sampler_name": "uni_pc", "scheduler": "normal",
        "denoise": 1.0, "model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0],
        "latent_image": ["3", 0]}},
    "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
    "8": {"class_type": "SaveImage", "inputs": {"filename_prefix": "inpaint", "images": ["7", 0]}},
}
# The editor's graph alone (no API graph), a primitive node feeding the seed.
WORKFLOW = {
    "last_node_id": 6, "last_link_id": 7, "version": 0.4,
    "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0,
         "widgets_values": ["juggernautXL_v9.safetensors"]},
        {"id": 2, "type": "CLIPTextEncode", "mode": 0, "inputs": [
            {"name": "clip", "type": "CLIP", "link": 1}], "widgets_values": ["a fox in snow"]},
        {"id": 3, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [896, 1152, 1]},
        {"id": 4, "type": "RandomNoise", "mode": 0, "inputs": [
            {"name": "noise_seed", "type": "INT", "link": 6, "widget": {"name": "noise_seed"}}],
         "widgets_values": [31337, "fixed"]},
        {"id": 5, "type": "PrimitiveNode", "mode": 0, "outputs": [
            {"name": "INT", "type": "INT", "links": [6]}], "widgets_values": [31337, "fixed"]},
        {"id": 6, "type": "SamplerCustomAdvanced", "mode": 0, "inputs": [
            {"name": "noise", "link": 2}, {"name": "guider", "link": 3},
            {"name": "sampler", "link": 4}, {"name": "sigmas", "link": 5},
            {"name": "latent_image", "link": 7}]},
        {"id": 7, "type": "CFGGuider", "mode": 0, "inputs": [
            {"name": "model", "link": 8}, {"name": "positive", "link": 9}],
         "widgets_values": [4.0]},
        {"id": 8, "type": "KSamplerSelect", "mode": 0, "widgets_values": ["dpmpp_2m"]},
        {"id": 9, "type": "BasicScheduler", "mode": 0, "widgets_values": ["karras", 32, 1]},
    ],
    "links": [[1, 1, 1, 2, 0, "CLIP"], [2, 4, 0, 6, 0, "NOISE"], [3, 7, 0, 6, 1, "GUIDER"],
              [4, 8, 0, 6, 2, "SAMPLER"], [5, 9, 0, 6, 3, "SIGMAS"], [6, 5, 0, 4, 0, "INT"],
              [7, 3, 0, 6, 4, "LATENT"], [8, 1, 0, 7, 0, "MODEL"],
              [9, 2, 0, 7, 1, "CONDITIONING"]],
}

# -- other tools ---------------------------------------------------------------------------
NOVELAI_COMMENT = {
    "prompt": "1girl, reading a book, window light, best quality", "steps": 28,
    "height": 1216, "width": 832, "scale": 5.0, "uncond_scale": 0.0, "cfg_rescale": 0.0,
    "seed": 1732050807, "n_samples": 1, "noise_schedule": "karras", "sampler": "k_euler_ancestral",
    "uc": "lowres, bad anatomy", "request_type": "PromptGenerateRequest", "version": 1,
}
NOVELAI_WEBP = {
    "Description": "1girl, reading a book, window light, best quality",
    "Software": "NovelAI", "Source": "NovelAI Diffusion V4 4F6E9D2C",
    "Generation time": "4.1", "Comment": json.dumps(NOVELAI_COMMENT),
}
CIVITAI = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 1911142, "steps": 30, "cfg": 4.0, "sampler_name": "euler_ancestral",
        "scheduler": "normal", "denoise": 1.0, "model": ["resource-stack", 0],
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216,
                                                       "batch_size": 1}},
    "6": {"class_type": "smZ CLIPTextEncode", "inputs": {
        "text": "a samurai cat, ukiyo-e", "parser": "A1111", "clip": ["resource-stack", 1]}},
    "7": {"class_type": "smZ CLIPTextEncode", "inputs": {
        "text": "bad hands", "parser": "A1111", "clip": ["resource-stack", 1]}},
    "resource-stack": {"class_type": "CheckpointLoaderSimple", "inputs": {
        "ckpt_name": "urn:air:sdxl:checkpoint:civitai:827184@1410435"}},
    "extra": {"airs": ["urn:air:sdxl:checkpoint:civitai:827184@1410435"]},
    "extraMetadata": json.dumps({
        "prompt": "a samurai cat, ukiyo-e", "negativePrompt": "bad hands", "steps": 30,
        "cfgScale": 4, "sampler": "Euler a", "seed": 1911142, "workflowId": "txt2img",
        "resources": [{"modelVersionId": 1410435, "strength": 1}]}),
}
SWARM = {
    "sui_image_params": {
        "prompt": "a glass terrarium with a tiny forest", "negativeprompt": "text, watermark",
        "model": "Flux/flux1-dev-fp8", "seed": 2042464333, "steps": 25, "cfgscale": 1.0,
        "fluxguidancescale": 3.5, "aspectratio": "Custom", "width": 768, "height": 1024,
        "sampler": "euler", "scheduler": "simple", "swarm_version": "0.9.5.0",
        "date": "2024-11-02"},
    "sui_extra_data": {"date": "2024-11-02", "prep_time": "1.2 sec"},
    "sui_models": [{"name": "flux1-dev-fp8.safetensors", "param": "model",
                    "hash": "0x3b7a0b5f"}],
}
RUINED = {
    "Prompt": "a bowl of ramen, studio photo", "Negative": "cartoon", "steps": 30, "cfg": 8.5,
    "width": 1152, "height": 896, "seed": 3864674281, "sampler_name": "dpmpp_2m_sde_gpu",
    "scheduler": "karras", "base_model_name": "sd_xl_base_1.0_0.9vae.safetensors",
    "base_model_hash": "be9edd61", "loras": [["4852686128", "0.1 - offset.safetensors"]],
    "start_step": 0, "denoise": None, "clip_skip": 1, "software": "RuinedFooocus",
}
HF_SPACE = {
    "prompt": "1girl, silver hair, starry sky", "negative_prompt": "nsfw, lowres",
    "resolution": "832 x 1216", "guidance_scale": 7, "num_inference_steps": 28,
    "seed": 210517, "sampler": "Euler a", "sdxl_style": "(None)", "add_quality_tags": True,
    "quality_tags": "Standard v3.1", "use_upscaler": None,
    "Model": {"Model": "Animagine XL 3.1", "Model hash": "e3c47aedb0"},
}
DRAW_THINGS = {
    "c": "a mossy stone bridge over a creek", "uc": "people", "seed": 2718281, "steps": 20,
    "scale": 4.5, "sampler": "DPM++ 2M Karras", "size": "768x512", "strength": 1,
    "model": "sd_xl_base_1.0_f16.ckpt", "aesthetic_score": 6, "negative_aesthetic_score": 2.5,
    "seed_mode": "Scale Alike", "shift": 1, "hires_fix": False, "tiled_decoding": False,
}


def _xmp(comment: str, description: str) -> str:
    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    return (
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"XMP Core 6.0.0\">"
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">"
        "<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" "
        "xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">"
        f"<xmp:CreatorTool>Draw Things</xmp:CreatorTool>"
        f"<dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{esc(description)}</rdf:li>"
        "</rdf:Alt></dc:description>"
        f"<exif:UserComment><rdf:Alt><rdf:li xml:lang=\"x-default\">{esc(comment)}</rdf:li>"
        "</rdf:Alt></exif:UserComment>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>")


def build() -> None:
    png("a1111/hires_fix.png", {"parameters": A1111_HIRES})
    png("a1111/inpaint.png", {"parameters": A1111_INPAINT})
    exif_image("forge/forge_cfg_scale.jpg", user_comment=unicode_comment(FORGE))
    png("sdnext/sdnext.png", {"parameters": SDNEXT})
    dumps = json.dumps
    png("comfyui/flux_sampler_custom_advanced.png", {"prompt": dumps(FLUX_GRAPH)})
    png("comfyui/sd_turbo_sampler_custom.png", {"prompt": dumps(TURBO_GRAPH)})
    png("comfyui/text_from_other_nodes.png", {"prompt": dumps(TEXT_NODES)})
    png("comfyui/img2img_image_scale.png", {"prompt": dumps(IMG2IMG)})
    png("comfyui/inpaint_size_from_image.png", {"prompt": dumps(INPAINT)}, size=(96, 64))
    png("comfyui/workflow_only_primitive_seed.png", {"workflow": dumps(WORKFLOW)})
    # ComfyUI's own WebP saver: the API graph in Model, the editor graph in Make.
    exif_image("comfyui/sdxl_cfg_guider.webp", ifd0={
        MODEL: "prompt:" + dumps(SDXL_CFG_GUIDER), MAKE: "workflow:" + dumps(WORKFLOW)})
    # A save node that writes the graph as JSON in the UserComment of a JPEG.
    exif_image("comfyui/turbo_user_comment.jpg",
               user_comment=unicode_comment(dumps(TURBO_GRAPH)))
    exif_image("comfyui/text_nodes_description.jpg",
               ifd0={IMAGE_DESCRIPTION: dumps(TEXT_NODES)})
    exif_image("novelai/novelai_v4.webp", user_comment=unicode_comment(dumps(NOVELAI_WEBP)))
    exif_image("civitai/civitai_generator.jpg", user_comment=unicode_comment(dumps(CIVITAI)))
    png("swarmui/swarmui.png", {"parameters": dumps(SWARM, indent=2)})
    exif_image("swarmui/swarmui.jpg", user_comment=unicode_comment(dumps(SWARM)))
    png("ruinedfooocus/ruinedfooocus.png", {"parameters": dumps(RUINED)})
    png("hf_space/animagine_space.png", {"parameters": dumps(HF_SPACE)})
    description = ("a mossy stone bridge over a creek\n-people\nSteps: 20, Sampler: "
                   "DPM++ 2M Karras, Guidance Scale: 4.5, Seed: 2718281, Size: 768x512, "
                   "Model: sd_xl_base_1.0_f16.ckpt, Strength: 1.0, Seed Mode: Scale Alike")
    png("drawthings/drawthings.png", {}, itxt={
        "XML:com.adobe.xmp": _xmp(dumps(DRAW_THINGS), description)})


if __name__ == "__main__":
    build()
