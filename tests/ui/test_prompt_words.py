"""The prompt box offers the embedded model's words and says when it knows none of them."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.core.models import ModelInfo
from studio.ui.prompt_panel import PromptPanel

TINY = ModelInfo("studio-tiny-diffusion", "studio-tiny-diffusion", "diffusion", "studio-tiny",
                 "embedded", "", 6_000_000, (("steps", 25), ("width", 64), ("height", 64)))
BIG = ModelInfo("big", "big-xl", "diffusion", "sdxl", "single-file", "/m/big.safetensors", 1)


def _panel(qtbot, current: str) -> PromptPanel:  # type: ignore[no-untyped-def]
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_models([TINY, BIG], current)
    panel.show()
    qtbot.waitExposed(panel)
    panel.prompt_edit.setFocus()
    qtbot.waitUntil(panel.prompt_edit.hasFocus)
    return panel


def test_typing_offers_the_embedded_models_words_and_takes_the_chosen_one(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(qtbot, TINY.id)
    completer = panel.prompt_words.completer
    qtbot.keyClicks(panel.prompt_edit, "a person with bl")
    popup = completer.popup()
    qtbot.waitUntil(popup.isVisible)
    offered = [completer.completionModel().index(i, 0).data()
               for i in range(completer.completionCount())]
    assert offered == ["black", "blonde", "blue"]
    qtbot.keyClick(popup, Qt.Key.Key_Down)  # the second: blonde
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not popup.isVisible())
    # The word is completed in place, with no new line from the Return that chose it.
    assert panel.prompt_edit.toPlainText() == "a person with blonde "
    assert not panel.prompt_words.hint_label.isVisibleTo(panel)


def test_a_prompt_with_no_known_word_gets_one_line_for_the_embedded_model_only(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(qtbot, TINY.id)
    label = panel.prompt_words.hint_label
    panel.prompt_edit.setPlainText("a cat in space")
    assert label.isVisibleTo(panel)
    assert "knows none of these words" in label.text() and "blonde" in label.text()
    panel.prompt_edit.setPlainText("a cat with red hair")  # one known word is enough
    assert not label.isVisibleTo(panel)
    panel.prompt_edit.setPlainText("a cat in space")
    assert label.isVisibleTo(panel)
    # Another model knows any words: no line, and nothing offered while typing.
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(BIG.id))
    assert not label.isVisibleTo(panel)
    panel.prompt_edit.clear()
    qtbot.keyClicks(panel.prompt_edit, "a bl")
    qtbot.wait(50)
    assert not panel.prompt_words.completer.popup().isVisible()
