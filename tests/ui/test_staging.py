"""Issue 29, point 3, in the real window: a batch opens as candidates over the canvas,
browsed with the keys, each kept as a layer (one undo entry linked to its History entry) or
discarded; History captions say task, seed and variation seed; outpainting is named so."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.ui.test_canvas import open_grey
from tests.ui.test_projects_ui import save_as


def run_batch(qtbot, window, count: int, seed: int = 40) -> None:
    panel = window.prompt_panel
    panel.prompt_edit.setPlainText("a smiling person with freckles")
    panel.seed_spin.setValue(seed)
    panel.seed_lock_button.setChecked(True)
    panel.batch_spin.setValue(count)
    staging = window.staging.staging
    window.actions["generate"].trigger()
    qtbot.waitUntil(lambda: len(staging) == count and not window.controller.busy,
                    timeout=10000)


def key(window, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(window.canvas, k, modifier)


def test_a_batch_waits_over_the_canvas_browsed_and_kept_with_the_keys(qtbot, window):
    run_batch(qtbot, window, 3, seed=40)
    bar, canvas = window.staging.bar, window.canvas
    assert window.doc.layers == []  # nothing lands by itself
    assert bar.isVisible() and canvas.staged_rect == window.doc.rect
    assert bar.label.text() == "1 of 3 · txt2img · seed 40"
    assert len(window.gallery_panel.items) == 3  # each in History with its request
    canvas.setFocus()
    key(window, Qt.Key.Key_Right)
    assert bar.label.text() == "2 of 3 · txt2img · seed 41"
    key(window, Qt.Key.Key_Left)
    key(window, Qt.Key.Key_3)
    assert bar.label.text() == "3 of 3 · txt2img · seed 42"
    key(window, Qt.Key.Key_Right)  # wraps around
    assert bar.label.text() == "1 of 3 · txt2img · seed 40"
    key(window, Qt.Key.Key_H)  # hide it: the canvas under it shows
    assert canvas.staged_rect is None and bar.hide_button.isChecked()
    key(window, Qt.Key.Key_H)
    assert canvas.staged_rect == window.doc.rect
    key(window, Qt.Key.Key_Right)
    key(window, Qt.Key.Key_Return)  # keep seed 41
    [layer] = window.doc.layers
    assert layer.name == "txt2img · smiling person freckles · seed 41"
    record = window.doc.log.get(layer.record_id)
    assert record.request.seed == 41  # the layer is linked to its History entry
    shown = canvas.composite_image().pixelColor(10, 10)
    expected = window.doc.log.image(record.image_hashes[0])[10, 10]
    assert (shown.red(), shown.green(), shown.blue()) == tuple(int(v) for v in expected)
    assert window.actions["undo"].text() == "&Undo Keep txt2img · seed 41"
    assert bar.label.text() == "2 of 2 · txt2img · seed 42"  # the next one is shown
    window.actions["undo"].trigger()  # one undo entry: the layer goes, the others wait
    assert window.doc.layers == [] and len(window.staging.staging) == 2
    window.actions["redo"].trigger()
    key(window, Qt.Key.Key_Delete)  # discard seed 42: it leaves History
    assert bar.label.text() == "1 of 1 · txt2img · seed 40"
    assert sorted(r.request.seed for r in window.gallery_panel.items) == [40, 41]
    assert 42 in [r.request.seed for r in window.doc.log.records]  # kept in the file
    bar.keep_all_button.click()
    assert [lay.name.rsplit("· ", 1)[1] for lay in window.doc.layers] == ["seed 41",
                                                                          "seed 40"]
    assert not bar.isVisible() and canvas.staged_rect is None


def test_keys_leave_a_text_field_alone_and_esc_discards(qtbot, window):
    run_batch(qtbot, window, 2, seed=5)
    prompt = window.prompt_panel.prompt_edit
    prompt.setFocus()
    qtbot.waitUntil(prompt.hasFocus)
    QTest.keyClick(prompt, Qt.Key.Key_Right)
    QTest.keyClick(prompt, Qt.Key.Key_Delete)
    QTest.keyClick(prompt, Qt.Key.Key_Return)
    assert len(window.staging.staging) == 2 and window.doc.layers == []
    assert window.staging.bar.label.text().startswith("1 of 2")
    # A click on the bar's label takes the keys there, and paints nothing below it.
    label = window.staging.bar.label
    qtbot.mouseClick(label, Qt.MouseButton.LeftButton, pos=label.rect().center())
    assert window.doc.layers == []
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Right)
    assert label.text().startswith("2 of 2")
    window.canvas.setFocus()
    key(window, Qt.Key.Key_Escape)
    key(window, Qt.Key.Key_Escape)
    assert len(window.staging.staging) == 0 and window.doc.layers == []
    assert window.gallery_panel.items == []  # both discarded: History is not flooded
    # Shift+Enter keeps all, each as its own named layer, in one undo entry.
    run_batch(qtbot, window, 2, seed=9)
    window.canvas.setFocus()
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert [lay.name.rsplit("· ", 1)[1] for lay in window.doc.layers] == ["seed 9",
                                                                          "seed 10"]
    window.actions["undo"].trigger()
    assert window.doc.layers == []


def test_a_single_generation_still_lands_as_a_layer(qtbot, window):
    window.prompt_panel.batch_spin.setValue(1)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    assert len(window.doc.layers) == 1 and not window.staging.bar.isVisible()


def test_varied_seeds_have_their_own_history_captions(qtbot, window):
    window.prompt_panel.seed_spin.setValue(7)
    window.prompt_panel.seed_lock_button.setChecked(True)
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    gallery = window.gallery_panel
    gallery.list.setCurrentRow(0)
    for _ in range(2):
        gallery.list.setCurrentRow(len(gallery.items) - 1)  # the first generation
        with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
            gallery.vary_button.click()
    captions = [gallery.list.item(i).text().replace("\n", " · ")
                for i in range(gallery.list.count())]
    assert captions[-1] == "txt2img · seed 7"
    varied = captions[:2]
    assert all(c.startswith("txt2img · seed 7 · var ") for c in varied)
    assert varied[0] != varied[1]  # each variation says which it is


def test_outpainting_is_named_outpaint_in_history_and_after_reopening(
        qtbot, window, tmp_path, monkeypatch):
    layer = open_grey(window, size=(64, 64))
    layer.pixels[:, 32:, 3] = 0  # the right half empty: outpainting
    window.doc.emit("layer_changed", layer_id=layer.id, rect=None, what="pixels")
    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    record = window.gallery_panel.items[0]
    assert record.request.task == "inpaint" and record.task == "outpaint"
    assert window.gallery_panel.list.item(0).text().startswith("outpaint\nseed")
    assert window.doc.layers[-1].name.startswith("outpaint ·")
    path = tmp_path / "outpaint.studio"
    save_as(qtbot, window, monkeypatch, path)
    window.actions["new_project"].trigger()
    assert window.gallery_panel.items == []
    assert window.projects.open_project(path)
    assert window.gallery_panel.items[0].task == "outpaint"
    assert window.gallery_panel.list.item(0).text().startswith("outpaint\nseed")


def test_png_export_carries_settings_only_for_one_generated_image(qtbot, window, tmp_path):
    from PIL import Image

    with qtbot.waitSignal(window.controller.generation_applied, timeout=5000):
        window.actions["generate"].trigger()
    alone = tmp_path / "alone.png"
    assert window.file_actions.export_canvas(str(alone), strip=False), window.banner.text
    assert "parameters" in Image.open(alone).text  # the one image it is: its settings
    top = open_grey(window, value=10)
    window.layers_panel.opacity_slider.setValue(0.5)  # a half-transparent layer over it
    assert top.opacity < 1
    both = tmp_path / "both.png"
    assert window.file_actions.export_canvas(str(both), strip=False), window.banner.text
    with Image.open(both) as im:  # no generation made this composite: no settings
        assert "parameters" not in im.text and im.size == (64, 64)


def test_a_grid_opens_as_candidates_not_in_history_and_saves_its_metadata(qtbot, window,
                                                                           tmp_path):
    import json

    from PIL import Image

    dialog = window.tools.open_grid()
    dialog.rows[0].set("seed", "1,2")
    dialog.rows[1].set("steps", "2,3")
    with qtbot.waitSignal(dialog.grid_finished, timeout=10000):
        dialog.start()
    staging = window.staging.staging
    assert sorted(c.seed for c in staging.candidates) == [1, 1, 2, 2]
    assert window.gallery_panel.items == []  # the cells do not flood History
    assert window.staging.bar.isVisible()
    staging.select(next(i for i, c in enumerate(staging.candidates)
                        if c.seed == 2 and c.request.steps == 3))
    window.staging.bar.keep_button.click()
    [layer] = window.doc.layers
    assert layer.name.endswith("seed 2")
    assert [(r.request.seed, r.request.steps) for r in window.gallery_panel.items] == [(2, 3)]
    window.actions["undo"].trigger()  # the layer goes, and its History entry with it
    assert window.doc.layers == [] and window.gallery_panel.items == []
    target = tmp_path / "grid.png"
    dialog.save(str(target))
    with Image.open(target) as im:
        text = dict(im.text)
    assert "Script: X/Y/Z plot" in text["parameters"]
    assert 'X Values: "1,2"' in text["parameters"]
    cells = json.loads(text["studio-grid"])["cells"]
    assert [(c["request"]["seed"], c["request"]["steps"]) for c in cells] == [
        (1, 2), (2, 2), (1, 3), (2, 3)]
    dialog.close()
