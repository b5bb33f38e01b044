"""The Sliders panel: drags preview and render, one undo entry per drag, saved slider sets."""

from __future__ import annotations

import pytest

from studio.core.document.layers import Document
from studio.core.document.undo import UndoStack
from studio.core.jobs.request import GenerationRequest
from studio.core.sliders.specs import prompt_pair
from studio.session.connection import Connection
from studio.session.jobs import JobQueue
from studio.session.sliders import SliderSession
from studio.ui.bridge import JobBridge
from studio.ui.sliders_panel import SETTLE_MS, SliderRow, SlidersPanel


def new_panel(qtbot, doc, services=None, runner=None):
    """A panel over its own slider session (connected when ``services`` are given)."""
    bridge = JobBridge()
    connection = Connection(JobQueue(post=bridge.post))
    if services is not None:
        connection.connect(services, runner)
    p = SlidersPanel(SliderSession(doc, UndoStack(doc), connection))
    qtbot.addWidget(p)
    return p


@pytest.fixture
def panel(qtbot, services, runner):
    p = new_panel(qtbot, Document(), services, runner)
    p.session.set_base_request(GenerationRequest("a person", model="fake-tiny", seed=7,
                                                 steps=4, width=64, height=64))
    yield p
    p.session.connection.disconnect()


def _drag(panel, slider_id, values):
    slider = panel.row(slider_id).slider
    slider.sliderPressed.emit()
    for v in values:
        slider.setValue(v)
    slider.sliderReleased.emit()


def test_a_drag_previews_renders_and_is_one_undo_entry(qtbot, panel, engine, runner):
    panel.session.add_slider(panel.session.starters["age"])
    assert panel.session.doc.sliders["age"] == 0.0  # with the starters, at rest
    before = panel.session.undo.index
    with qtbot.waitSignal(panel.session.committed, timeout=10000):
        _drag(panel, "age", [0.2, 0.5, 0.9, 1.4])
    assert panel.session.undo.index == before + 1
    assert panel.session.doc.sliders["age"] == pytest.approx(1.4)
    last = engine.requests[-1]
    assert last.sliders[0].slider_id == "age" and last.sliders[0].value == pytest.approx(1.4)
    assert last.seed == 7 and last.prompt == "a person"
    # Undo puts the slider (and the document) back where the drag started.
    panel.session.undo.undo()
    assert panel.session.doc.sliders["age"] == 0.0
    assert panel.row("age").slider.value() == 0.0
    # A second drag is a second entry.
    _drag(panel, "age", [0.3, -0.7])
    qtbot.waitUntil(lambda: panel.session.undo.index == before + 1, timeout=10000)
    assert panel.session.undo.index == before + 1 and panel.session.undo.can_undo
    assert panel.session.current_request().sliders[0].value == pytest.approx(-0.7)


def test_value_zero_asks_for_the_base_image(panel):
    panel.session.add_slider(prompt_pair("old", "young"))
    assert panel.session.current_request() == panel.session.base_request.replace(model_hash="", device="",
                                                                 dtype="")


def test_a_prompt_sliders_tooltip_says_where_its_words_go(panel):
    panel.session.add_slider(panel.session.starters["hair-red"])
    panel.session.add_slider(panel.session.starters["style-painting"])
    panel.session.set_base_request(panel.session.base_request.replace(prompt="a person with blonde hair"))
    tip = panel.row("hair-red").label.toolTip()
    assert "“blonde hair” → “red hair” at 2" in tip and "a person with …" in tip
    style_tip = panel.row("style-painting").label.toolTip()
    assert "averaged over the slider's templates" in style_tip
    # Hair keeps the rest of the image; a style changes the whole picture.
    assert "the rest is kept" in tip and "the rest is kept" not in style_tip


def test_a_pair_keeps_the_rest_unless_the_box_is_unticked(qtbot, panel):
    from PySide6.QtWidgets import QPushButton

    assert panel.keep_rest_check.isChecked()
    for text, keep in (("tall", True), ("oil painting", False)):
        panel.keep_rest_check.setChecked(keep)
        panel.positive_edit.setText(text)
        panel.negative_edit.setText("photo")
        panel.findChild(QPushButton, "add_pair_button").click()
        assert panel.session.sliders.specs[f"prompt:{text}|photo"].local is keep
    # The choice comes back with the project.
    again = new_panel(qtbot, panel.session.doc)
    again.session.reload_from_document()
    assert again.session.sliders.specs["prompt:oil painting|photo"].local is False
    assert again.session.sliders.specs["prompt:tall|photo"].local is True


def test_the_slider_set_is_restored_from_the_document(qtbot, panel, runner):
    panel.session.add_slider(prompt_pair("old", "young"))
    panel.session.add_slider(panel.session.starters["smile"])
    with qtbot.waitSignal(panel.session.committed, timeout=10000):
        _drag(panel, "smile", [0.6])
    again = new_panel(qtbot, panel.session.doc)
    assert {"prompt:old|young", "smile"} <= set(again.session.sliders.specs)
    assert again.row("smile").slider.value() == pytest.approx(0.6)
    panel.session.remove_slider("smile")
    assert "smile" not in panel.session.doc.sliders
    panel.session.undo.undo()
    assert panel.session.doc.sliders["smile"] == pytest.approx(0.6)
    assert panel.row("smile").slider.value() == pytest.approx(0.6)


def test_vae_mode_requests_the_latent_model(panel):
    panel.set_mode("vae")
    panel.attribute_combo.setCurrentIndex(panel.attribute_combo.findData("glasses"))
    panel.latent_button.click()
    panel.session.sliders.set("vae:glasses", 1.5)
    req = panel.session.current_request()
    assert req.model == "studio-tiny-vae" and req.sliders[0].space == "vae"
    assert req.sliders[0].value == 1.5
    from PySide6.QtWidgets import QGroupBox

    assert panel.findChild(QGroupBox, "vae_group").isVisibleTo(panel)
    assert not panel.findChild(QGroupBox, "prompt_group").isVisibleTo(panel)


def test_latent_modes_edit_the_target_layer(panel):
    """VAE and GAN mode edit the selected layer (over white); with nothing drawn they start
    from the seed."""
    from studio.core.document.layers import Layer

    for mode in ("vae", "gan"):
        panel.set_mode(mode)
        assert panel.session.current_request().task == "txt2img"  # an empty canvas: the seed
    layer = Layer.blank(32, 32, "photo")
    layer.pixels[:16, :, :3] = (200, 40, 20)
    layer.pixels[:16, :, 3] = 255  # the lower half stays transparent
    panel.session.doc.layers.append(layer)
    panel.session.doc.set_active_layer(layer.id)
    assert panel.target_label.text() == "Layer “photo”"
    for mode in ("vae", "gan"):
        panel.set_mode(mode)
        req = panel.session.current_request()
        assert req.task == "img2img" and req.model == f"studio-tiny-{mode}"
        image = req.init_image.to_array()
        assert image.shape[:2] == (32, 32)
        assert tuple(image[0, 0, :3]) == (200, 40, 20) and tuple(image[-1, -1, :3]) == (255,) * 3


def test_a_gan_slider_says_it_keeps_the_other_attributes(panel):
    panel.set_mode("gan")
    panel.attribute_combo.setCurrentIndex(panel.attribute_combo.findData("smile"))
    panel.latent_button.click()
    assert panel.session.sliders.specs["gan:smile"].method == "flow"
    tip = panel.row("gan:smile").label.toolTip()
    assert tip.startswith("Smile in the GAN latent: a curved path that keeps the other")
    assert panel.session.current_request().model == "studio-tiny-gan"


def test_neighbourhood_grid_shows_nine_frames(qtbot, panel, engine):
    with qtbot.waitSignal(panel.frames_shown, timeout=10000,
                          check_params_cb=lambda n: n == 9):
        panel.session.make_grid()
    centre = engine.requests[-5]
    assert centre.variation_seed is None and centre.seed == 7
    assert {r.variation_strength for r in engine.requests[-9:]} == {0.0, 0.2}


def test_in_the_window_a_release_edits_the_selected_layer(qtbot, window, engine, runner):
    window.prompt_panel.prompt_edit.setPlainText("a portrait")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=10000):
        window.controller.generate()
    panel = window.sliders_panel
    assert window.docks["sliders"].widget() is panel
    layer = window.doc.layers[-1]
    assert panel.target_label.text() == f"Layer “{layer.name}”"
    first = layer.record_id
    with qtbot.waitSignal(panel.session.committed, timeout=10000) as blocker:
        _drag(panel, "smile", [0.5, 1.0])
    record = window.doc.log.get(blocker.args[0])
    assert record.request.sliders[0].slider_id == "smile"
    assert record.request.sliders[0].value == pytest.approx(1.0)
    assert record.parent_id == first and layer.record_id == record.id
    assert len(window.doc.layers) == 1 and not window.canvas.has_slider_preview
    qtbot.waitUntil(lambda: runner.is_idle(), timeout=10000)


def test_inversion_edits_the_init_image(panel):
    import numpy as np

    from studio.core.document.pixels import Pixels

    photo = Pixels.from_array(np.full((64, 64, 3), 120, np.uint8))
    panel.session.set_base_request(panel.session.base_request.replace(task="img2img", init_image=photo))
    panel.invert_check.setChecked(True)
    panel.session.add_slider(panel.session.starters["age"])
    panel.session.sliders.set("age", 1.0)
    req = panel.session.current_request()
    assert req.scheduler == "DDIM" and req.init_image == photo
    assert [s.space for s in req.sliders] == ["invert", "prompt"]


def test_marked_examples_become_a_latent_slider(qtbot, panel, services):
    import numpy as np
    panel.set_mode("vae")
    panel.example_name.setText("freckles")
    panel.session.mark_example(True, np.zeros((64, 64, 3), np.uint8))
    panel.session.mark_example(True, np.ones((64, 64, 3), np.uint8))
    panel.session.mark_example(False, np.full((64, 64, 3), 9, np.uint8))
    panel.build_button.click()
    qtbot.waitUntil(lambda: "vae:example:freckles" in panel.session.doc.sliders, timeout=5000)
    assert services.directions.calls == [("vae", 2, 1)]
    panel.session.sliders.set("vae:example:freckles", 1.0)
    payload = dict(panel.session.current_request().sliders[0].payload)
    assert payload["vector"].split(",")[:2] == ["0.0", "1.0"]


def test_a_slider_built_from_examples_comes_back_when_the_project_reopens(
        qtbot, panel, services, tmp_path):
    import numpy as np

    from studio.core.project.store import ProjectStore

    services.directions.vector = np.array([0.5, -1.0, 2.0], np.float32)
    panel.set_mode("gan")
    panel.example_name.setText("freckles")
    panel.session.mark_example(True, np.zeros((64, 64, 3), np.uint8))
    panel.session.mark_example(False, np.full((64, 64, 3), 9, np.uint8))
    panel.build_button.click()
    qtbot.waitUntil(lambda: "gan:example:freckles" in panel.session.doc.sliders, timeout=5000)
    panel.session.sliders.set("gan:example:freckles", 1.5)
    panel.session.doc.sliders["gan:example:freckles"] = 1.5
    ProjectStore.save(tmp_path / "p.studio", panel.session.doc, panel.session.undo)

    project = ProjectStore.load(tmp_path / "p.studio")
    reopened = new_panel(qtbot, project.document)
    reopened.session.set_base_request(GenerationRequest("a person", model="fake-tiny", seed=7,
                                                steps=4, width=64, height=64))
    reopened.session.reload_from_document()
    row = reopened.row("gan:example:freckles")
    assert row.slider.value() == 1.5
    reopened.set_mode("gan")
    slider = reopened.session.current_request().sliders[0]
    assert slider.space == "gan" and slider.value == 1.5
    assert [float(v) for v in dict(slider.payload)["vector"].split(",")] == [0.5, -1.0, 2.0]


def _save_with_sliders(path, values):
    """A project whose slider set is ``values`` (id -> value, in order)."""
    from studio.core.project.store import ProjectStore

    doc = Document()
    doc.width = doc.height = 64
    doc.sliders = dict(values)
    ProjectStore.save(path, doc)
    return path


def _show_tab(qtbot, window, name):
    window.docks[name].raise_()
    qtbot.waitUntil(lambda: not window.docks[name].visibleRegion().isEmpty(), timeout=2000)


def test_reopening_a_project_with_the_same_sliders_keeps_the_rows(qtbot, window, tmp_path):
    panel = window.sliders_panel
    _show_tab(qtbot, window, "sliders")
    ids = list(window.sliders.sliders.specs)
    assert len(ids) > 2
    rows = {sid: panel.row(sid) for sid in ids}
    values = dict.fromkeys(ids, 0.0) | {ids[0]: 0.75, ids[-1]: -1.25}
    path = _save_with_sliders(tmp_path / "same.studio", values)
    for _ in range(2):  # opened over the window's own set, then over itself
        assert window.projects.open_project(path)
        assert list(window.sliders.sliders.specs) == ids
        assert all(panel.row(sid) is row for sid, row in rows.items())  # the same widgets
        assert len(panel.findChildren(SliderRow)) == len(ids)
        assert panel.row(ids[0]).slider.value() == pytest.approx(0.75)
        assert panel.row(ids[-1]).slider.value() == pytest.approx(-1.25)
        assert panel.row(ids[1]).slider.value() == 0.0
    assert window.doc.sliders[ids[0]] == pytest.approx(0.75)  # shown, not recorded again


def test_other_sliders_are_rebuilt_when_the_hidden_tab_is_shown(qtbot, window, tmp_path):
    panel = window.sliders_panel
    _show_tab(qtbot, window, "prompt")
    assert not panel.on_screen()
    before = set(panel.findChildren(SliderRow))
    ids = list(window.sliders.sliders.specs)[:2]
    path = _save_with_sliders(tmp_path / "other.studio", {ids[0]: 0.5, ids[1]: 0.0})
    assert window.projects.open_project(path)
    assert list(window.sliders.sliders.specs) == ids
    assert set(panel.findChildren(SliderRow)) == before  # not rebuilt while hidden
    window.docks["sliders"].raise_()  # the tab shown: rebuilt there and then
    rows = panel.findChildren(SliderRow)
    assert sorted(r.objectName() for r in rows) == sorted(f"slider_row:{i}" for i in ids)
    assert not before & set(rows)
    assert panel.row(ids[0]).slider.value() == pytest.approx(0.5)


def _handle_centre(slider):
    """Where the handle of a ``QSlider`` is drawn, in its own coordinates."""
    from PySide6.QtWidgets import QStyle, QStyleOptionSlider

    option = QStyleOptionSlider()
    slider.initStyleOption(option)
    return slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                         QStyle.SubControl.SC_SliderHandle, slider).center()


def _move(slider, x, modifiers):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(QPoint(x, slider.height() // 2))
    event = QMouseEvent(QMouseEvent.Type.MouseMove, pos, slider.mapToGlobal(pos),
                        Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, modifiers)
    QApplication.sendEvent(slider, event)


def test_dragging_is_comfortable(qtbot, panel, engine):
    """A wide track; Shift moves ten times finer; nothing moves under the cursor while the
    preview comes; the busy mark shows at once; a double-click and a typed value are one
    undo entry each."""
    from PySide6.QtCore import QPoint, Qt

    engine.step_delay = 0.05  # a render that takes a while (4 steps: 0.2 s)
    panel.resize(400, 700)
    panel.show()
    qtbot.waitExposed(panel)
    row = panel.row("smile")
    track = row.slider.slider
    assert track.width() >= 0.6 * panel.width()
    where = track.mapTo(panel, QPoint(0, 0))
    undo, start = panel.session.undo, panel.session.undo.index
    centre = _handle_centre(track)
    qtbot.mousePress(track, Qt.MouseButton.LeftButton, pos=centre)
    for x in (10, 60):  # Shift held from the first move on: 50 px in fine steps
        _move(track, centre.x() + x, Qt.KeyboardModifier.ShiftModifier)
    fine = row.slider.value()
    span = (row.spec.maximum - row.spec.minimum) * 50 / track.width()
    assert fine == pytest.approx(span / 10, abs=0.02) and fine > 0
    with qtbot.waitSignal(panel.session.overlay_shown, timeout=5000):
        _move(track, centre.x() + 50, Qt.KeyboardModifier.NoModifier)
    coarse = row.slider.value()
    assert coarse == pytest.approx(span, abs=0.05) and coarse > 5 * fine
    assert track.mapTo(panel, QPoint(0, 0)) == where  # the preview went to the canvas
    with qtbot.waitSignal(panel.session.committed, timeout=5000):
        qtbot.mouseRelease(track, Qt.MouseButton.LeftButton, pos=centre + QPoint(50, 0))
        assert panel.busy_label.isVisibleTo(panel)  # at once, while the render runs
    assert not panel.busy_label.isVisibleTo(panel)
    assert undo.index == start + 1 and panel.session.doc.sliders["smile"] == \
        pytest.approx(coarse)
    # A double-click puts it back to 0: one undo entry.
    with qtbot.waitSignal(panel.session.committed, timeout=5000):
        qtbot.mouseDClick(track, Qt.MouseButton.LeftButton, pos=_handle_centre(track))
    assert row.slider.value() == 0 and undo.index == start + 2
    assert panel.session.doc.sliders["smile"] == 0.0
    # A value typed in the box: rendered and kept once, at Enter.
    box = row.slider.box
    box.lineEdit().selectAll()
    with qtbot.waitSignal(panel.session.committed, timeout=5000):
        qtbot.keyClicks(box.lineEdit(), "1.25")
        qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert undo.index == start + 3 and panel.session.doc.sliders["smile"] == 1.25
    assert engine.requests[-1].sliders[0].value == 1.25


def test_starters_the_backend_cannot_run_are_greyed_with_the_reason(qtbot, runner):
    from studio.core.engines import EngineFeatures, EngineServices
    from tests.fakes import FakeEngine

    reason = "VAE and GAN sliders run on the local engine only."
    features = EngineFeatures(backend="fake", prompt_sliders=True,
                              why_not=(("latent_sliders", reason),))
    p = new_panel(qtbot, Document(), EngineServices(FakeEngine(features=features)), runner)
    try:
        assert p.row("smile").slider.isEnabled()  # a prompt starter: on
        for sid in ("vae:smile", "gan:glasses"):
            row = p.row(sid)  # there from the start, greyed, saying why
            assert not row.slider.isEnabled() and row.label.toolTip() == reason
    finally:
        p.session.connection.disconnect()


def test_a_starter_known_not_to_work_on_the_model_is_greyed_with_its_reason(panel):
    """A slider file's ``not_on`` greys the starter while the image comes from that model,
    with the reason as its tooltip; on another model it is on again, with its own tooltip."""
    from dataclasses import replace

    from studio.core.sliders.specs import SliderSpec

    session = panel.session
    reason = "Not on fake-tiny: it draws no smile."
    smile = replace(session.starters["smile"], not_on=(("fake-tiny", reason),))
    assert SliderSpec.from_dict(smile.to_dict()).not_on == smile.not_on  # a file keeps it
    session.sliders.specs["smile"] = smile
    panel.row("smile").spec = smile
    session.set_base_request(session.base_request.replace(seed=8))  # the image is re-read
    row = panel.row("smile")
    assert not row.slider.isEnabled() and row.slider.toolTip() == reason
    assert panel.row("hair-red").slider.isEnabled()
    session.set_base_request(GenerationRequest("a person", model="another-model", seed=7,
                                               steps=4, width=64, height=64))
    assert row.slider.isEnabled() and row.slider.toolTip() != reason
    assert row.label.toolTip().startswith(smile.description)
    # The shipped Smile is on for both embedded diffusion models: the UNet draws the smile
    # since its mouth fine-tune, the DiT since its twin training (issues 24, 27).
    shipped = session.starters["smile"]
    for model in ("studio-tiny-dit", "studio-tiny-diffusion", "/models/sd15"):
        assert shipped.reason_not_on(model) == "", model


def test_a_burst_of_arrow_keys_is_one_edit(qtbot, panel, engine):
    """Keys held on a focused slider: the value follows each press; one render and one
    undo entry once they pause."""
    from PySide6.QtCore import Qt

    panel.show()
    qtbot.waitExposed(panel)
    track = panel.row("smile").slider.slider
    track.setFocus()
    undo, start, sent = panel.session.undo, panel.session.undo.index, len(engine.requests)
    with qtbot.waitSignal(panel.session.committed, timeout=5000):
        for _ in range(5):
            qtbot.keyClick(track, Qt.Key.Key_Right)
        qtbot.keyClick(track, Qt.Key.Key_PageUp)
        assert panel.row("smile").slider.value() == pytest.approx(0.15)
    qtbot.wait(2 * SETTLE_MS)  # nothing more comes
    assert undo.index == start + 1 and len(engine.requests) == sent + 1
    assert panel.session.doc.sliders["smile"] == pytest.approx(0.15)
    assert engine.requests[-1].sliders[0].value == pytest.approx(0.15)


def test_an_unavailable_slider_stays_dimmed_and_says_why_when_asked_again(qtbot):
    """The panel asks every row again at each change of target: a row that cannot work
    stays dimmed with its reason (the same dimming, not one more each time), and looks
    normal once it works again."""
    from PySide6.QtWidgets import QGraphicsOpacityEffect

    from studio.ui.sliders_panel import UNAVAILABLE_OPACITY

    spec = prompt_pair("angry", "calm")
    row = SliderRow(spec, 0.0)
    qtbot.addWidget(row)
    row.set_unavailable("Not on this model")
    effect = row.slider.graphicsEffect()
    row.set_unavailable("Not on this backend")
    for widget in (row.slider, row.label):
        assert not widget.isEnabled()
        assert isinstance(widget.graphicsEffect(), QGraphicsOpacityEffect)
        assert widget.graphicsEffect().opacity() == pytest.approx(UNAVAILABLE_OPACITY)
        assert widget.toolTip() == "Not on this backend"
    assert row.slider.graphicsEffect() is effect
    row.set_unavailable("")
    assert row.slider.isEnabled() and row.label.isEnabled()
    assert row.slider.graphicsEffect() is None and row.label.graphicsEffect() is None
    assert row.slider.toolTip() != "Not on this backend"
