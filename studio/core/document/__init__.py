"""The open image: layers, masks, selection, prompts and sliders; its edits and undo."""
