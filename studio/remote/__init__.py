"""The remote backend: ComfyUI servers over HTTP and websocket; imports no torch and no Qt.

``workflow`` builds API-format graphs, ``client`` talks to one server on the backend's own
event loop, ``pool`` shares one queue between servers, ``engine`` implements
``studio.core.engines.Engine``, ``check`` says what a server lacks, and ``services`` builds it
all from the settings for the composition roots.
"""
