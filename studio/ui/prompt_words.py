"""``PromptWords``: the embedded model's vocabulary, offered while its prompt is typed.

The embedded ``studio-tiny`` diffusion model knows a few dozen words (hair colours,
backgrounds, glasses, smiling / frowning; ``studio.core.portraits.prompts``). While it is the
selected model, a completer offers those words for the word being typed, and a prompt in which
it knows no word gets one line under the prompt box saying what it knows. Other models
know any words: nothing is offered or said for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QStringListModel, Qt
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import QCompleter, QLabel, QPlainTextEdit

from studio.core.portraits.prompts import (
    completion_words,
    uses_embedded_vocabulary,
    vocabulary_hint,
)

_ACCEPT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab)


class PromptTextEdit(QPlainTextEdit):
    """The prompt's text box; while a completer's popup is open it leaves Return, Enter and
    Tab to the completer (QCompleter hands each key to the box first, by ``event()``, which
    bypasses event filters, and completes only if the box did not accept it), so the key
    that chooses a word neither inserts a new line nor moves the focus."""

    completer: QCompleter | None = None

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt)
        if (self.completer is not None and self.completer.popup().isVisible()
                and event.key() in _ACCEPT_KEYS):
            event.ignore()
            return
        super().keyPressEvent(event)


class PromptWords(QObject):
    """Completion and a no-known-word line for ``edit`` while ``current_model()`` (a
    ``ModelInfo`` or None) is an embedded text-to-image model; call ``refresh`` when the
    model changes (the text's changes are followed here)."""

    def __init__(self, edit: QPlainTextEdit, current_model: Callable[[], Any]) -> None:
        super().__init__(edit)
        self._edit = edit
        self._current_model = current_model
        self._words = QStringListModel(list(completion_words()), self)
        self.completer = QCompleter(self._words, self)
        self.completer.setObjectName("prompt_completer")
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer.setWidget(edit)
        self.completer.activated.connect(self._on_completer_activated)
        self.hint_label = QLabel(objectName="prompt_vocabulary_label")
        self.hint_label.setWordWrap(True)
        self.hint_label.setVisible(False)
        if isinstance(edit, PromptTextEdit):
            edit.completer = self.completer
        edit.textChanged.connect(self._on_edit_text_changed)

    @property
    def active(self) -> bool:
        """Whether the selected model is one whose vocabulary is offered."""
        return uses_embedded_vocabulary(self._current_model())

    def refresh(self, *_args: object) -> None:
        """Re-check the model and the prompt (the model changed)."""
        text = self._edit.toPlainText()
        hint = vocabulary_hint(text) if self.active else ""
        self.hint_label.setText(hint)
        self.hint_label.setVisible(bool(hint))
        if not self.active:
            self.completer.popup().hide()

    # -- completion ----------------------------------------------------------------------
    def _word_before_cursor(self) -> str:
        cursor = self._edit.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.StartOfWord,
                            QTextCursor.MoveMode.KeepAnchor)
        return cursor.selectedText()

    def _on_edit_text_changed(self) -> None:
        self.refresh()
        if not self.active or not self._edit.hasFocus():
            return
        prefix = self._word_before_cursor()
        if len(prefix) < 2 or not prefix.isalpha():
            self.completer.popup().hide()
            return
        self.completer.setCompletionPrefix(prefix)
        count = self.completer.completionCount()
        if count == 0 or (count == 1 and self.completer.currentCompletion().lower()
                          == prefix.lower()):
            self.completer.popup().hide()
            return
        self.completer.popup().setCurrentIndex(self.completer.completionModel().index(0, 0))
        rect = self._edit.cursorRect()
        rect.setWidth(self.completer.popup().sizeHintForColumn(0)
                      + self.completer.popup().verticalScrollBar().sizeHint().width())
        self.completer.complete(rect)

    def _on_completer_activated(self, word: str) -> None:
        cursor = self._edit.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.StartOfWord,
                            QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(word + " ")
        self._edit.setTextCursor(cursor)
