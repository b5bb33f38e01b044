"""The PySide6 studio: windows, canvas, panels and the bridge from engine events to Qt."""
