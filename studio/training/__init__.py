"""Training, evaluation and model cards of the embedded ``studio-tiny`` models.

Run ``python -m studio.training vae|gan|diffusion|classifier|all|eval``. Only
``studio.core.portraits.render`` is light (numpy + Pillow); the other modules import torch and must
be imported lazily by the app, like ``studio.engine``.
"""
