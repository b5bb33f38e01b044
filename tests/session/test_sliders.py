"""The sliders' state: drags, requests and results, without the Sliders panel."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import latent_slider, prompt_pair
from studio.session.connection import Connection
from studio.session.sliders import SliderSession

BASE = GenerationRequest("a person", model="fake-tiny", seed=7, steps=4, width=64, height=64)


@pytest.fixture
def sliders(connection) -> SliderSession:
    doc = Document()
    session = SliderSession(doc, UndoStack(doc), connection)
    session.set_base_request(BASE)
    return session


def test_a_drag_is_one_undo_entry_and_its_release_renders(sliders, engine, runner):
    shown = []
    sliders.preview_shown.connect(shown.append)
    sliders.add_slider(sliders.starters["age"])
    before = sliders.undo.index
    sliders.press("age")
    for value in (0.2, 0.9, 1.4):
        assert sliders.move("age", value)  # dragging: preview, not render
    assert sliders.release("age") == pytest.approx(1.4)
    assert runner.wait_idle(5)
    assert sliders.undo.index == before + 1
    last = engine.requests[-1]
    assert last.sliders[0].slider_id == "age" and last.sliders[0].value == pytest.approx(1.4)
    assert last.seed == 7 and last.prompt == "a person"
    assert len(shown) == 1 and shown[0].shape == (64, 64, 3)
    sliders.undo.undo()
    assert sliders.doc.sliders["age"] == 0.0


def test_value_changes_are_announced_for_undo_and_redo(sliders, runner):
    values = []
    sliders.value_changed.connect(lambda sid, v: values.append((sid, v)))
    sliders.add_slider(prompt_pair("old", "young"))
    sliders.move("prompt:old|young", 0.5)  # a whole edit: kept when its image comes
    assert runner.wait_idle(5)
    sliders.undo.undo()
    assert values[-2:] == [("prompt:old|young", 0.5), ("prompt:old|young", 0.0)]


def test_value_zero_asks_for_the_base_image(sliders):
    sliders.add_slider(prompt_pair("old", "young"))
    assert sliders.current_request() == BASE.replace(model_hash="", device="", dtype="")


def test_a_removed_slider_comes_back_with_undo(sliders, runner):
    removed = []
    sliders.slider_removed.connect(removed.append)
    sliders.add_slider(sliders.starters["smile"])
    sliders.move("smile", 0.6)
    assert runner.wait_idle(5)
    sliders.remove_slider("smile")
    assert removed == ["smile"] and "smile" not in sliders.sliders.specs
    sliders.undo.undo()
    assert sliders.doc.sliders["smile"] == pytest.approx(0.6)
    assert "smile" in sliders.sliders.specs


def test_latent_mode_requests_the_latent_model(sliders):
    sliders.set_mode("gan")
    sliders.add_slider(latent_slider("gan", "glasses"))
    sliders.sliders.set("gan:glasses", 1.5)
    req = sliders.current_request()
    assert req.model == "studio-tiny-gan" and req.sliders[0].value == 1.5
    assert req.task == "txt2img"  # nothing drawn: from the seed
    sliders.edit_init = True
    sliders.set_canvas_image(None)
    from studio.core.document.layers import Layer

    layer = Layer.blank(32, 32, "photo")
    layer.pixels[..., :3], layer.pixels[..., 3] = 90, 255
    sliders.doc.layers.append(layer)
    assert sliders.current_request().task == "img2img"


def test_a_grid_of_seeds_fills_nine_frames(sliders, runner):
    frames = []
    sliders.frame_shown.connect(lambda index, image: frames.append(index))
    sliders.make_grid()
    assert runner.wait_idle(10)
    assert sorted(frames) == list(range(9)) and sliders.frames_kind == "grid"


def test_marked_examples_become_a_slider_that_the_project_keeps(sliders, services, runner):
    hints = []
    sliders.message.connect(hints.append)
    sliders.set_mode("vae")
    assert sliders.build_example_slider("freckles") is None
    assert hints[-1] == "Mark at least one image with and one without the attribute."
    sliders.mark_example(True, np.zeros((64, 64, 3), np.uint8))
    sliders.mark_example(False, np.full((64, 64, 3), 9, np.uint8))
    assert sliders.build_example_slider("freckles") is not None
    assert runner.wait_idle(5)
    assert services.directions.calls == [("vae", 1, 1)]
    assert "vae:example:freckles" in sliders.doc.sliders
    assert "vae:example:freckles" in sliders.doc.slider_specs
    sliders.sliders.set("vae:example:freckles", 1.0)
    payload = dict(sliders.current_request().sliders[0].payload)
    assert payload["vector"].split(",")[:2] == ["0.0", "1.0"]


def test_without_a_backend_requests_are_built_but_not_sent(engine):
    doc = Document()
    sliders = SliderSession(doc, UndoStack(doc), Connection())
    sliders.set_base_request(BASE)
    sent = []
    sliders.render_requested.connect(sent.append)
    sliders.add_slider(sliders.starters["age"])
    sliders.move("age", 1.0)  # a whole edit: rendered at once
    assert len(sent) == 1 and sent[0].sliders[0].value == 1.0
    assert engine.requests == []


def _generated_layer(sliders, engine, name="portrait"):
    """A generated layer on the canvas, as the window puts it there."""
    from studio.core.document.edits import ApplyGeneration
    from studio.core.jobs.cancel import CancelToken

    result = engine.generate(BASE, lambda *a: None, CancelToken())
    record = sliders.doc.log.add_result(result)
    sliders.undo.push(ApplyGeneration(result.images[0], (0, 0, 64, 64), record.id, name=name))
    return sliders.doc.layers[-1], record


def test_the_target_is_the_selected_layer_and_says_so(sliders, engine):
    from studio.core.document.edits import RemoveLayer, SetSelection

    layer, record = _generated_layer(sliders, engine)
    target = sliders.target()
    assert (target.kind, target.layer_id, target.record_id) == ("layer", layer.id, record.id)
    assert target.words == "Layer “portrait”"
    sliders.undo.push(SetSelection((8, 8, 16, 16)))
    assert sliders.target().kind == "selection"
    assert sliders.target().words == "The selection in layer “portrait”"
    sliders.undo.push(SetSelection(None))
    # An undone generation is never the target.
    sliders.undo.push(RemoveLayer(layer.id))
    sliders.set_base_request(None)
    assert sliders.target().kind == "none" and sliders.current_request() is None


def test_a_drag_on_a_layer_commits_its_pixels_as_one_undo_entry(sliders, engine, runner):
    layer, record = _generated_layer(sliders, engine)
    before_pixels = layer.pixels.copy()
    overlays = []
    sliders.overlay_shown.connect(lambda rect, image: overlays.append(rect))
    sliders.add_slider(sliders.starters["age"])
    index = sliders.undo.index
    sliders.press("age")
    sliders.move("age", 1.2)
    sliders.submit_preview()
    assert runner.wait_idle(5)
    assert overlays == [(0, 0, 64, 64)]
    sliders.release("age")
    assert runner.wait_idle(5)
    assert sliders.undo.index == index + 1
    assert len(sliders.doc.layers) == 1 and layer.record_id != record.id
    new = sliders.doc.log.get(layer.record_id)
    assert new.parent_id == record.id and new.request.sliders[0].value == pytest.approx(1.2)
    sliders.undo.undo()
    np.testing.assert_array_equal(layer.pixels, before_pixels)
    assert layer.record_id == record.id and sliders.doc.sliders["age"] == 0.0


def test_starters_are_there_from_the_start_and_carry_over_between_modes(connection):
    doc = Document()
    session = SliderSession(doc, UndoStack(doc), connection)
    assert {"smile", "glasses", "hair-red", "vae:smile", "gan:smile"} <= set(doc.sliders)
    assert session.undo.index == 0
    session.sliders.values["vae:smile"] = 1.5
    session.set_mode("vae")
    session.set_mode("gan")  # the GAN's smile takes the VAE's value
    assert session.sliders.values["gan:smile"] == 1.5


@pytest.fixture
def edits_show(engine, monkeypatch):
    """The fake engine's image shows the edit: a request with a slider, a LoRA or a seed
    variation comes back inverted (so a commit changes the layer and undo can restore it)."""
    from dataclasses import replace

    real = engine.generate

    def generate(request, on_step, cancel):
        result = real(request, on_step, cancel)
        if request.sliders or request.loras or request.variation_seed is not None:
            result = replace(result, images=tuple(255 - im for im in result.images))
        return result

    monkeypatch.setattr(engine, "generate", generate)
    return engine


def _drag_and_keep(sliders, runner, slider_id, value):
    """Press, move, release; the drag's one undo entry and the record it kept."""
    index = sliders.undo.index
    kept = []
    sliders.committed.connect(kept.append)
    sliders.press(slider_id)
    sliders.move(slider_id, value)
    sliders.release(slider_id)
    assert runner.wait_idle(5)
    sliders.committed.disconnect(kept.append)
    assert len(kept) == 1 and sliders.undo.index == index + 1  # one drag, one undo
    return sliders.doc.log.get(kept[0])


@pytest.mark.parametrize("kind", ["lora", "variation", "interp"])
def test_lora_and_seed_sliders_keep_their_edit_with_its_full_request(
        sliders, edits_show, runner, kind):
    from studio.core.sliders.specs import interpolation_slider, lora_slider, variation_slider

    layer, record = _generated_layer(sliders, edits_show)
    before = layer.pixels.copy()
    spec = {"lora": lora_slider("/loras/ink.safetensors"), "variation": variation_slider(99),
            "interp": interpolation_slider(99)}[kind]
    sliders.add_slider(spec)
    value = {"lora": 1.5, "variation": 0.4, "interp": 0.6}[kind]
    kept = _drag_and_keep(sliders, runner, spec.slider_id, value)
    request = kept.request
    # History holds the whole request: the layer's own generation plus the slider.
    assert (request.prompt, request.seed, request.steps, request.model) == \
        (BASE.prompt, BASE.seed, BASE.steps, BASE.model)
    if kind == "lora":
        assert [(lw.path, lw.weight) for lw in request.loras] == \
            [("/loras/ink.safetensors", 1.5)]
    elif kind == "variation":
        assert (request.variation_seed, request.variation_strength) == (99, pytest.approx(0.4))
    else:
        assert [(s.slider_id, s.value, dict(s.payload)["seed_b"]) for s in request.sliders] \
            == [("interp:99", pytest.approx(0.6), 99)]
    assert kept.parent_id == record.id and layer.record_id == kept.id
    assert not np.array_equal(layer.pixels, before)  # the layer shows the edit
    np.testing.assert_array_equal(layer.pixels[..., :3], kept_image(sliders, kept))
    sliders.undo.undo()
    np.testing.assert_array_equal(layer.pixels, before)
    assert layer.record_id == record.id and sliders.doc.sliders[spec.slider_id] == 0.0


def kept_image(sliders, record):
    return sliders.doc.log.image(record.image_hashes[0])


def test_a_photo_layer_is_edited_through_its_inversion_and_kept(sliders, edits_show, runner):
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Layer

    sliders.set_base_request(None)
    photo = Layer.blank(64, 64, "photo")
    photo.pixels[..., :3], photo.pixels[..., 3] = (120, 90, 60), 255
    sliders.undo.push(AddLayer(photo))
    sliders.doc.set_active_layer(photo.id)
    target = sliders.target()
    assert (target.kind, target.record_id, target.words) == ("layer", None, "Layer “photo”")
    before = photo.pixels.copy()
    kept = _drag_and_keep(sliders, runner, "smile", 1.2)
    request = kept.request
    assert request.model == "fake-tiny" and request.scheduler == "DDIM"
    assert request.task == "img2img" and request.strength == 1.0
    np.testing.assert_array_equal(request.init_image.to_array()[..., :3], before[..., :3])
    assert [(s.slider_id, s.value) for s in request.sliders] == \
        [("invert", 1.0), ("smile", pytest.approx(1.2))]
    assert photo.record_id == kept.id and not np.array_equal(photo.pixels, before)
    sliders.undo.undo()
    np.testing.assert_array_equal(photo.pixels, before)
    assert photo.record_id is None


@pytest.mark.parametrize("mode", ["vae", "gan"])
def test_latent_results_take_the_layers_size_in_preview_and_commit(
        sliders, edits_show, runner, mode):
    """The latent models draw 64 px; the preview and the kept edit cover the whole layer."""
    from studio.core.document.edits import AddLayer
    from studio.core.document.layers import Layer

    photo = Layer.blank(160, 96, "photo")
    photo.pixels[..., :3], photo.pixels[..., 3] = 200, 255
    sliders.undo.push(AddLayer(photo))
    sliders.doc.set_active_layer(photo.id)
    sliders.set_mode(mode)
    sid = f"{mode}:smile"
    overlays = []
    sliders.overlay_shown.connect(lambda rect, image: overlays.append((rect, image.shape)))
    sliders.press(sid)
    sliders.move(sid, 1.5)
    sliders.submit_preview()
    assert runner.wait_idle(5)
    assert overlays == [((0, 0, 160, 96), (96, 160, 4))]
    sliders.release(sid)
    assert runner.wait_idle(5)
    record = sliders.doc.log.get(photo.record_id)
    assert record.request.model == f"studio-tiny-{mode}"
    # The preview is drawn at 64 px; the kept edit at the layer's own size (to 8 px), so
    # the engine carries the change onto the layer's pixels instead of scaling 64 px up.
    assert record.request.width == 160 and record.request.height == 96
    assert kept_image(sliders, record).shape[:2] == (96, 160)
    assert photo.pixels.shape[:2] == (96, 160)
    # The whole layer shows the result: no corner of it is left as it was.
    changed = (photo.pixels[..., :3] != 200).any(axis=2)
    assert changed[:32, :32].any() and changed[-32:, -32:].any() and changed.mean() > 0.9
