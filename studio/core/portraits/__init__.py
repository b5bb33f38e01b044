"""The procedural cartoon portraits the embedded models learn from: attributes, captions,
the renderer, and an oracle that reads generated images by the renderer's layout."""
