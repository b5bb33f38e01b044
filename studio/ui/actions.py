"""Every command of the window as a named ``QAction``: one table, menus built from it."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from studio.ui.theme import icon


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    menu: str  # "File", "Edit", "View", "Image", "Image/Tools", "Generate", "Models", "Help"
    shortcuts: tuple[str, ...] = ()
    icon: str = ""
    checkable: bool = False
    tip: str = ""
    separator_before: bool = False
    #: A bare-key shortcut (B, E, [ ...): it acts only while the canvas has the keyboard
    #: focus, so that typing in the prompt or a field types the letter.
    on_canvas: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("new_project", "&New", "File", ("Ctrl+N",)),
    ActionSpec("open_image", "&Open…", "File", ("Ctrl+O",), "open",
               tip="Open a project, an image, or an .ora/.psd file as layers"),
    ActionSpec("save_project", "&Save", "File", ("Ctrl+S",), separator_before=True),
    ActionSpec("save_project_as", "Save &As…", "File", ("Ctrl+Shift+S",)),
    ActionSpec("export_image", "&Export…", "File", ("Ctrl+Shift+E",), "export",
               separator_before=True,
               tip="Export the canvas as PNG, JPEG or WebP with its settings, or as layers"),
    ActionSpec("export_gallery", "Export &Gallery…", "File", (), "gallery"),
    ActionSpec("import_settings", "&Import Settings from Image…", "File", (),
               tip="Restore the prompt and settings of an image made by us, A1111, ComfyUI, "
                   "InvokeAI, Fooocus or NovelAI"),
    ActionSpec("quit", "&Quit", "File", ("Ctrl+Q",), separator_before=True),
    ActionSpec("undo", "&Undo", "Edit", ("Ctrl+Z",), "undo"),
    ActionSpec("redo", "&Redo", "Edit", ("Ctrl+Shift+Z", "Ctrl+Y"), "redo"),
    ActionSpec("cut", "Cu&t", "Edit", ("Ctrl+X",), separator_before=True,
               tip="Cut the selection of the active layer to the clipboard (no selection: "
                   "the whole layer)"),
    ActionSpec("copy", "&Copy", "Edit", ("Ctrl+C",), "copy",
               tip="Copy the selection of the active layer (no selection: the whole layer)"),
    ActionSpec("paste", "&Paste as New Layer", "Edit", ("Ctrl+V",),
               tip="Paste the clipboard's image (from here or any program) as a new layer"),
    ActionSpec("select_all", "Select &Whole Canvas", "Edit", ("Ctrl+A",), "select",
               separator_before=True),
    ActionSpec("deselect", "&Deselect", "Edit", ("Ctrl+D",)),
    ActionSpec("copy_settings", "&Copy Settings (A1111 text)", "Edit", ("Ctrl+Shift+C",),
               "copy", separator_before=True),
    ActionSpec("preferences", "&Preferences…", "Edit", (), separator_before=True),
    ActionSpec("zoom_in", "Zoom &In", "View", ("Ctrl++", "Ctrl+="), "zoom-100"),
    ActionSpec("zoom_out", "Zoom &Out", "View", ("Ctrl+-",)),
    ActionSpec("zoom_fit", "&Fit Canvas", "View", ("Ctrl+0",), "zoom-fit"),
    ActionSpec("zoom_100", "&Actual Pixels (100%)", "View", ("Ctrl+1",), "zoom-100"),
    ActionSpec("theme_dark", "&Dark Theme", "View/Theme", (), "theme", checkable=True,
               separator_before=True),
    ActionSpec("theme_light", "&Light Theme", "View/Theme", (), "theme", checkable=True),
    ActionSpec("show_mask", "Show &Mask Overlay", "View", ("Ctrl+Shift+H",), "mask",
               checkable=True, separator_before=True,
               tip="Show or hide the tint over the painted inpaint mask"),
    ActionSpec("mask_color", "Mask Overlay &Colour…", "View", (), "color",
               tip="The colour of the mask's tint (pink can read as skin)"),
    ActionSpec("reset_layout", "&Reset Panel Layout", "View", (), separator_before=True),
    ActionSpec("tool_brush", "&Brush", "Image/Tools", ("B",), "brush", checkable=True,
               on_canvas=True),
    ActionSpec("tool_eraser", "&Eraser", "Image/Tools", ("E",), "eraser", checkable=True,
               on_canvas=True),
    ActionSpec("tool_mask_brush", "&Mask Brush", "Image/Tools", ("M",), "mask", checkable=True,
               on_canvas=True),
    ActionSpec("tool_mask_eraser", "Mask E&raser", "Image/Tools", ("Shift+M",), "mask-eraser",
               checkable=True, on_canvas=True),
    ActionSpec("tool_select", "&Rectangle Selection", "Image/Tools", ("R",), "select",
               checkable=True, on_canvas=True),
    ActionSpec("tool_picker", "&Colour Picker", "Image/Tools", ("I",), "picker", checkable=True,
               on_canvas=True),
    ActionSpec("tool_pan", "&Pan", "Image/Tools", ("H",), "pan", checkable=True, on_canvas=True),
    ActionSpec("brush_smaller", "Brush &Smaller", "Image/Tools", ("[",), separator_before=True,
               on_canvas=True),
    ActionSpec("brush_bigger", "Brush &Bigger", "Image/Tools", ("]",), on_canvas=True),
    ActionSpec("brush_color", "Brush C&olour…", "Image/Tools", (), "color"),
    ActionSpec("scale_image", "&Scale Image…", "Image", ("Ctrl+Alt+I",), "resize",
               tip="Scale the canvas and every layer in it"),
    ActionSpec("resize_canvas", "&Canvas Size…", "Image", ("Ctrl+Alt+C",), "resize",
               tip="Grow or shrink the canvas, layers unscaled; new empty area is outpainted "
                   "by the next generation"),
    ActionSpec("crop", "C&rop to Selection", "Image", ("Ctrl+Shift+X",), "crop"),
    ActionSpec("clear_mask", "Clear Layer &Mask", "Image", (), "close",
               tip="Clear the active layer's inpaint mask"),
    ActionSpec("invert_mask", "&Invert Layer Mask", "Image", (), "mask-eraser",
               tip="Inpaint everywhere but where the mask is painted"),
    ActionSpec("new_layer", "&New Layer", "Image", ("Ctrl+Shift+N",), "add",
               separator_before=True),
    ActionSpec("delete_layer", "&Delete Layer", "Image", (), "delete"),
    ActionSpec("raise_layer", "&Raise Layer", "Image", ("Ctrl+]",), "up"),
    ActionSpec("lower_layer", "&Lower Layer", "Image", ("Ctrl+[",), "down"),
    ActionSpec("toggle_layer", "Show/&Hide Layer", "Image", ("Ctrl+,",), "eye"),
    ActionSpec("duplicate_layer", "D&uplicate Layer", "Image", ("Ctrl+J",), "copy"),
    ActionSpec("merge_down", "&Merge Down", "Image", ("Ctrl+E",), "down",
               tip="Merge the active layer into the one below"),
    ActionSpec("new_group", "&Group Layer", "Image", ("Ctrl+G",), "layers",
               tip="Put the active layer in a new group (opacity, visibility and blend mode "
                   "for all it holds)"),
    ActionSpec("ungroup", "U&ngroup", "Image", ("Ctrl+Shift+G",),
               tip="Take the layers out of the selected group and remove it"),
    ActionSpec("flatten_image", "&Flatten Image", "Image", (),
               tip="Draw every visible layer into one"),
    ActionSpec("lock_alpha", "Lock &Alpha", "Image", (), "lock", checkable=True,
               tip="Paint only where the active layer already has pixels"),
    ActionSpec("generate", "&Generate", "Generate", ("Ctrl+Return", "Ctrl+Enter"), "generate"),
    ActionSpec("cancel", "&Cancel Running Job", "Generate", ("Esc",), "cancel"),
    ActionSpec("cancel_all", "Cancel &All Jobs", "Generate", ("Ctrl+Shift+Esc",)),
    ActionSpec("randomize_seed", "&Randomise Seed", "Generate", ("Ctrl+R",), "dice",
               separator_before=True),
    ActionSpec("lock_seed", "&Lock Seed", "Generate", ("Ctrl+L",), "lock", checkable=True),
    ActionSpec("gallery_place", "&Place on Canvas", "Generate/History", (), "place"),
    ActionSpec("gallery_init", "Use as &Init Image", "Generate/History", (), "init"),
    ActionSpec("gallery_vary", "&Vary Seed", "Generate/History", ("Ctrl+Shift+V",), "vary"),
    ActionSpec("gallery_delete", "&Delete from Gallery", "Generate/History", (), "delete"),
    ActionSpec("queue_earlier", "Run Selected Job &Earlier", "Generate/Queue", (), "up"),
    ActionSpec("queue_later", "Run Selected Job &Later", "Generate/Queue", (), "down"),
    ActionSpec("queue_cancel", "&Cancel Selected Job", "Generate/Queue", (), "close"),
    ActionSpec("reload_models", "Re&load Models", "Models", ()),
    ActionSpec("help_models", "&Adding Models…", "Models", (), "info"),
    ActionSpec("help_shortcuts", "&Keyboard Shortcuts", "Help", ("F1",)),
    ActionSpec("about", "&About Latent Studio", "Help", (), "app"),
)

MENUS = ("File", "Edit", "View", "Image", "Generate", "Models", "Help")


def create_actions(parent: QWidget, canvas: QWidget | None = None) -> dict[str, QAction]:
    """The window's actions by name; shortcuts work anywhere in the window, except the
    bare-key ones (``on_canvas``), which work only while ``canvas`` has the focus."""
    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        action = QAction(spec.text, parent)
        action.setObjectName(f"action_{spec.name}")
        if spec.icon:
            action.setIcon(icon(spec.icon))
        if spec.shortcuts:
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut if spec.on_canvas
                                      else Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(spec.checkable)
        tip = spec.tip or spec.text.replace("&", "").rstrip("…")
        if spec.shortcuts:
            where = ", on the canvas" if spec.on_canvas else ""
            tip += f" ({spec.shortcuts[0]}{where})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        if spec.on_canvas and canvas is not None:
            canvas.addAction(action)  # its shortcut context: the canvas alone
        else:
            parent.addAction(action)  # shortcuts work even where the menu bar is hidden
        actions[spec.name] = action
    return actions


def shortcut_table() -> str:
    rows = "".join(f"<tr><td>{s.text.replace('&', '').rstrip('…')}</td>"
                   f"<td><b>{' / '.join(s.shortcuts)}</b>"
                   f"{' (on the canvas)' if s.on_canvas else ''}</td></tr>"
                   for s in ACTIONS if s.shortcuts)
    return (f"<table cellspacing='6'>{rows}</table><p>Single-key shortcuts act on the canvas: "
            "click it (or press Tab to reach it) first; in the prompt they type.</p>")
