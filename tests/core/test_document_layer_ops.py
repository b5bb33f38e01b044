"""Issue 29: blend modes drawn by the W3C formulas, layer operations that undo after a
reopen, layered export read back by psd-tools and pyora, generated layer names."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document import operations as ops
from studio.core.document.blend import MODES
from studio.core.document.edits import SetLayerProps
from studio.core.document.layers import Document, Layer
from studio.core.document.undo import UndoStack
from studio.core.formats.layered import (
    LayerData,
    LayeredImage,
    export_ora,
    export_psd,
    import_ora,
    import_psd,
)
from studio.core.jobs.request import GenerationRequest
from studio.core.project.store import ProjectStore

W, H = 24, 16
#: The modes the issue names, with W3C B(cb, cs) for one backdrop/source pair in 0..1.
CB, CS = 0.6, 0.3
W3C = {
    "normal": CS,
    "multiply": CB * CS,
    "screen": CB + CS - CB * CS,
    "overlay": 1 - 2 * (1 - CS) * (1 - CB) if CB > 0.5 else 2 * CS * CB,  # hard light swapped
    "darken": min(CB, CS),
    "lighten": max(CB, CS),
    "color_dodge": min(1.0, CB / (1 - CS)),
    "color_burn": 1 - min(1.0, (1 - CB) / CS),
    "soft_light": CB - (1 - 2 * CS) * CB * (1 - CB),  # CS <= 0.5 branch
    "difference": abs(CB - CS),
}


def _rng_layer(rng, name, **kw):
    return Layer(name=name, pixels=rng.integers(0, 256, (H, W, 4), dtype=np.uint8), **kw)


def _opaque(value, w=W, h=H):
    px = np.zeros((h, w, 4), np.uint8)
    px[..., :3] = value
    px[..., 3] = 255
    return px


@pytest.mark.parametrize("mode", list(W3C))
def test_each_mode_draws_the_w3c_formula(mode):
    doc = Document(width=4, height=4)
    doc.layers = [Layer(name="bg", pixels=_opaque(round(CB * 255), 4, 4)),
                  Layer(name="top", pixels=_opaque(round(CS * 255), 4, 4), blend=mode)]
    got = doc.composite()[0, 0, 0] / 255
    assert abs(got - W3C[mode]) <= 1.5 / 255, (mode, got, W3C[mode])


def test_half_transparent_layer_over_half_transparent_backdrop_follows_w3c():
    # co = cs*as*(1-ab) + cb*ab*(1-as) + as*ab*B ; ao = as + ab*(1-as)
    bg = np.zeros((1, 1, 4), np.uint8) + np.array([200, 100, 50, 128], np.uint8)
    top = np.zeros((1, 1, 4), np.uint8) + np.array([50, 150, 250, 191], np.uint8)
    doc = Document(width=1, height=1, layers=[Layer(pixels=bg), Layer(pixels=top,
                                                                      blend="multiply",
                                                                      opacity=0.8)])
    cb, ab = bg[0, 0, :3] / 255, 128 / 255
    cs, a_s = top[0, 0, :3] / 255, 191 / 255 * 0.8
    co = cs * a_s * (1 - ab) + cb * ab * (1 - a_s) + a_s * ab * cb * cs
    ao = a_s + ab * (1 - a_s)
    out = doc.composite()[0, 0].astype(float)
    assert abs(out[3] - ao * 255) <= 1
    assert np.abs(out[:3] - co / ao * 255).max() <= 1


def _save_and_reopen(tmp_path, doc, stack):
    path = tmp_path / "ops.studio"
    ProjectStore.save(path, doc, stack)
    project = ProjectStore.load(path)
    return project.document, project.undo_stack


def test_blend_lock_duplicate_merge_flatten_undo_after_reopen(tmp_path):
    rng = np.random.default_rng(5)
    doc = Document(width=W, height=H)
    stack = UndoStack(doc)
    from studio.core.document.edits import AddLayer

    bg = Layer(name="bg", pixels=_opaque(120))
    stack.push(AddLayer(bg))
    paint = _rng_layer(rng, "paint", x=3, y=2)
    stack.push(AddLayer(paint))
    stack.push(SetLayerProps(paint.id, blend="screen", lock_alpha=True))
    screened = doc.composite()
    copy = ops.duplicate_layer(stack, paint.id)
    assert [lay.name for lay in doc.layers] == ["bg", "paint", "paint copy"]
    assert copy.blend == "screen" and copy.lock_alpha and copy.x == 3
    stack.undo()  # the duplicate goes
    ops.merge_down(stack, paint.id)
    assert [lay.name for lay in doc.layers] == ["bg"]
    np.testing.assert_allclose(doc.composite().astype(int), screened.astype(int), atol=1)
    merged = doc.composite()

    doc2, stack2 = _save_and_reopen(tmp_path, doc, stack)
    assert [lay.name for lay in doc2.layers] == ["bg"]
    np.testing.assert_array_equal(doc2.composite(), merged)
    stack2.undo()  # merge down, undone after the reopen
    assert [lay.name for lay in doc2.layers] == ["bg", "paint"]
    back = doc2.layer(paint.id)
    assert back.blend == "screen" and back.lock_alpha
    np.testing.assert_array_equal(back.pixels, paint.pixels)
    np.testing.assert_array_equal(doc2.composite(), screened)
    stack2.undo()  # the blend mode and the lock
    assert doc2.layer(paint.id).blend == "normal" and not doc2.layer(paint.id).lock_alpha


def test_flatten_keeps_the_look_and_undoes_after_reopen(tmp_path):
    rng = np.random.default_rng(6)
    doc = Document(width=W, height=H)
    stack = UndoStack(doc)
    from studio.core.document.edits import AddLayer

    for i, mode in enumerate(["normal", "multiply", "overlay", "difference"]):
        stack.push(AddLayer(_rng_layer(rng, f"L{i}", blend=mode, opacity=0.9)))
    hidden = _rng_layer(rng, "hidden", visible=False)
    stack.push(AddLayer(hidden))
    look = doc.composite()
    ops.flatten(stack)
    assert [lay.name for lay in doc.layers] == ["Flattened"]
    np.testing.assert_array_equal(doc.composite(), look)
    doc2, stack2 = _save_and_reopen(tmp_path, doc, stack)
    stack2.undo()
    assert [lay.name for lay in doc2.layers] == ["L0", "L1", "L2", "L3", "hidden"]
    assert [lay.blend for lay in doc2.layers[:4]] == ["normal", "multiply", "overlay",
                                                      "difference"]
    np.testing.assert_array_equal(doc2.composite(), look)


def test_cut_and_paste_pixels_undo_after_reopen(tmp_path):
    doc = Document(width=W, height=H)
    stack = UndoStack(doc)
    from studio.core.document.edits import AddLayer

    stack.push(AddLayer(Layer(name="bg", pixels=_opaque(90))))
    part = ops.layer_pixels_in(doc.layers[0], (4, 4, 6, 5))
    assert ops.clear_pixels(stack, doc.layers[0].id, (4, 4, 6, 5), "Cut")
    assert doc.layers[0].pixels[4:9, 4:10, 3].max() == 0
    pasted = ops.paste_layer(stack, part, "bit", at=(10, 2), blend="multiply")
    assert (pasted.x, pasted.y, pasted.width, pasted.blend) == (10, 2, 6, "multiply")
    doc2, stack2 = _save_and_reopen(tmp_path, doc, stack)
    assert [lay.name for lay in doc2.layers] == ["bg", "bit"]
    stack2.undo()
    stack2.undo()
    assert [lay.name for lay in doc2.layers] == ["bg"]
    assert doc2.layers[0].pixels[..., 3].min() == 255


def test_scale_image_scales_every_layer_offset_mask_and_selection(tmp_path):
    doc = Document(width=40, height=20)
    stack = UndoStack(doc)
    from studio.core.document.edits import AddLayer, SetSelection

    stack.push(AddLayer(Layer(name="bg", pixels=_opaque(50, 40, 20))))
    small = Layer(name="small", pixels=_opaque(200, 10, 4), x=30, y=16,
                  mask=np.full((4, 10), 255, np.uint8))
    stack.push(AddLayer(small))
    stack.push(SetSelection((10, 10, 20, 10)))
    ops.scale_image(stack, 80, 40)
    assert (doc.width, doc.height) == (80, 40)
    assert doc.layers[0].pixels.shape[:2] == (40, 80)
    s = doc.layer(small.id)
    assert (s.x, s.y, s.width, s.height) == (60, 32, 20, 8)
    assert s.mask is not None and s.mask.shape == (8, 20)
    assert doc.selection == (20, 20, 40, 20)
    doc2, stack2 = _save_and_reopen(tmp_path, doc, stack)
    stack2.undo()
    assert (doc2.width, doc2.height) == (40, 20)
    s2 = doc2.layer(small.id)
    assert (s2.x, s2.y, s2.width, s2.height) == (30, 16, 10, 4)
    assert doc2.selection == (10, 10, 20, 10)


# -- export read by psd-tools and pyora, import of their names -----------------------------
def _moded_layers():
    rng = np.random.default_rng(7)
    bg = np.dstack([rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    np.full((H, W), 255, np.uint8)])
    layers = [LayerData("bg", bg)]
    for i, mode in enumerate(W3C):
        if mode != "normal":
            layers.append(LayerData(mode, rng.integers(0, 256, (6, 8, 4), dtype=np.uint8),
                                    (i * 3) % 16, i % 10, True, 0.85, mode))
    return layers


def test_psd_export_carries_blend_modes_that_psd_tools_reads_and_draws_as_we_do(tmp_path):
    from psd_tools import PSDImage

    layers = _moded_layers()
    path = export_psd(tmp_path / "modes.psd", W, H, layers)
    psd = PSDImage.open(path)
    assert [lay.blend_mode.name for lay in psd] == ["NORMAL"] + [MODES[lay.blend][2]
                                                              for lay in layers[1:]]
    assert [lay.blend_mode.value for lay in psd][1:4] == [b"mul ", b"scrn", b"over"]
    ours = LayeredImage(W, H, tuple(layers)).composite().astype(int)
    theirs = np.asarray(psd.composite(force=True).convert("RGBA")).astype(int)
    assert np.abs(ours - theirs).max() <= 2
    back = import_psd(path)
    assert [lay.blend for lay in back.layers] == [lay.blend for lay in layers]
    assert back.warnings == ()


def test_ora_export_carries_svg_names_that_pyora_reads_and_draws_as_we_do(tmp_path):
    pyora = pytest.importorskip("pyora", reason="pyora (a test dependency) reads .ora files")
    layers = _moded_layers()
    path = export_ora(tmp_path / "modes.ora", W, H, layers)
    project = pyora.Project.load(str(path))
    ops_read = {lay.name: lay.composite_op for lay in project.children}
    assert ops_read == {lay.name: MODES[lay.blend][1] for lay in layers}
    assert ops_read["color_dodge"] == "svg:color-dodge"
    # pyora draws soft light with GIMP's older formula, not the W3C one the spec names
    without = [lay for lay in layers if lay.blend != "soft_light"]
    ours = LayeredImage(W, H, tuple(without)).composite().astype(int)
    export_ora(path, W, H, without)
    theirs = np.asarray(pyora.Project.load(str(path)).get_image_data(use_original=False))
    assert np.abs(ours - theirs.astype(int)).max() <= 1
    back = import_ora(path)
    assert [lay.blend for lay in back.layers] == [lay.blend for lay in without]


@pytest.mark.parametrize("psd_mode", [m[2] for m in MODES.values()])
def test_psd_blend_keys_written_by_psd_tools_open_as_that_mode(tmp_path, psd_mode):
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer
    from psd_tools.constants import BlendMode

    psd = PSDImage.new("RGBA", (8, 8))
    PixelLayer.frompil(Image.fromarray(_opaque(100, 8, 8)), psd, name="bg")
    top = PixelLayer.frompil(Image.fromarray(_opaque(180, 8, 8)), psd, name="top")
    top.blend_mode = BlendMode[psd_mode]
    psd.save(tmp_path / "m.psd")
    image = import_psd(tmp_path / "m.psd")
    assert MODES[image.layers[-1].blend][2] == psd_mode and image.warnings == ()


def test_unknown_saved_mode_opens_as_normal_and_a_bad_mode_is_refused():
    layer = Layer.from_dict({"id": "a", "pixels": "k", "blend": "vivid_nonsense"},
                            lambda key: np.zeros((1, 1, 4), np.uint8))
    assert layer.blend == "normal"
    with pytest.raises(ValueError, match="unknown blend mode"):
        Layer(blend="nope")


def test_generated_layer_names_say_task_short_prompt_and_seed():
    req = GenerationRequest(prompt="a photo of a smiling person with red hair, (freckles:1.2)",
                            seed=7)
    assert ops.generated_layer_name(req) == "txt2img · smiling person red · seed 7"
    assert ops.generated_layer_name(req, 2).endswith("seed 9")
    varied = GenerationRequest(prompt="castle", seed=3, variation_seed=11,
                               variation_strength=0.3)
    assert ops.generated_layer_name(varied) == "txt2img · castle · seed 3 var 11"
    assert ops.generated_layer_name(req, task="outpaint").startswith("outpaint · ")


# -- PSD masks and clipping (issue 20, point 6 of issue 29) ---------------------------------
def _psd_with_mask_and_clipping(path, mask_box=(4, 2, 10, 8), mask_bg=0):
    """A PSD as Photoshop writes one: a base layer with a layer mask smaller than the layer
    (outside it the mask's background colour), and a layer clipped to the base."""
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer

    psd = PSDImage.new("RGBA", (W, H))
    PixelLayer.frompil(Image.fromarray(_opaque(30)), psd, name="paper")
    base_px = np.zeros((10, 14, 4), np.uint8) + np.array([200, 40, 40, 255], np.uint8)
    base = PixelLayer.frompil(Image.fromarray(base_px), psd, name="base", top=3, left=5)
    x0, y0, w, h = mask_box
    base.create_mask(Image.new("L", (w, h), 255), top=3 + y0, left=5 + x0)
    base.mask._data.background_color = mask_bg
    clip_px = np.zeros((H, W, 4), np.uint8) + np.array([20, 220, 90, 255], np.uint8)
    clip = PixelLayer.frompil(Image.fromarray(clip_px), psd, name="clipped")
    clip.clipping = True
    psd.save(path)
    return path


def test_psd_layer_mask_and_clipping_are_applied_as_photoshop_draws_them(tmp_path):
    from psd_tools import PSDImage

    path = _psd_with_mask_and_clipping(tmp_path / "clip.psd")
    image = import_psd(path)
    assert [lay.name for lay in image.layers] == ["paper", "base", "clipped"]
    base, clipped = image.layers[1], image.layers[2]
    left, top, right, bottom = list(PSDImage.open(path))[1].mask.bbox  # as psd-tools wrote it
    shown = (min(right, 19) - left) * (min(bottom, 13) - top)
    assert 0 < shown < 10 * 14
    # the mask: only its box of the base shows, the rest is cut away
    assert base.rgba[..., 3].sum() == shown * 255
    assert base.rgba[top - 3, left - 5, 3] == 255 and base.rgba[0, 0, 3] == 0
    # the clipped layer shows only where the (masked) base has pixels
    assert clipped.rgba[..., 3].sum() == shown * 255
    assert any("masks" in w for w in image.warnings) and any("Clipped" in w
                                                             for w in image.warnings)
    reference = np.asarray(PSDImage.open(path).composite(force=True).convert("RGBA"))
    assert np.abs(image.composite().astype(int) - reference.astype(int)).max() <= 2


def test_psd_mask_with_white_background_hides_only_its_black_part(tmp_path):
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer

    psd = PSDImage.new("RGBA", (8, 8))
    layer = PixelLayer.frompil(Image.fromarray(_opaque(150, 8, 8)), psd, name="x")
    layer.create_mask(Image.new("L", (2, 2), 0), top=3, left=3)  # a black hole, 2 x 2
    layer.mask._data.background_color = 255
    psd.save(tmp_path / "hole.psd")
    rgba = import_psd(tmp_path / "hole.psd").layers[0].rgba
    assert rgba[3:5, 3:5, 3].max() == 0 and rgba[..., 3].sum() == (64 - 4) * 255
    reference = np.asarray(PSDImage.open(tmp_path / "hole.psd").composite(force=True)
                           .convert("RGBA")).astype(int)
    assert np.abs(rgba[..., 3].astype(int) - reference[..., 3]).max() <= 2
    seen = reference[..., 3] > 0  # the colour of a transparent pixel is nobody's business
    assert np.abs(rgba[seen][:, :3].astype(int) - reference[seen][:, :3]).max() <= 2
