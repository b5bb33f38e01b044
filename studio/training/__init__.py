"""Training, evaluation and model cards of the embedded ``studio-tiny`` models.

Run ``python -m studio.training vae|gan|diffusion|classifier|all|eval``. The networks come
from ``studio.engine.nets`` and the portraits from ``studio.core.portraits``; nothing the
studio runs imports this package (an import-linter contract in ``pyproject.toml`` says so).
"""
