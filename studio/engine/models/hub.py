"""Downloading models from the Hugging Face hub, with progress and a clear offline message.

No torch here: this runs on a worker thread of the model manager. Files go to the Hugging
Face cache (where discovery finds them) unless a folder is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.jobs.cancel import CancelToken

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".md", ".png", ".jpg")


class OfflineError(StudioError):
    kind = "offline"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_model(repo_id: str, progress: Progress | None = None,
                   cancel: CancelToken | None = None, local_dir: str | Path | None = None) -> Path:
    """Download the safetensors weights and configs of ``repo_id``; returns the folder.

    Raises
    ------
    OfflineError
        ``HF_HUB_OFFLINE`` is set or the hub cannot be reached.
    StudioError
        The repository does not exist or is gated.
    """
    repo_id = repo_id.strip()
    if repo_id.count("/") != 1 or " " in repo_id:
        raise StudioError(f"{repo_id!r} is not a hub repository id (like 'owner/name').")
    if is_offline():
        raise OfflineError("You are offline: HF_HUB_OFFLINE is set, so nothing can be "
                           "downloaded.", hint="Unset HF_HUB_OFFLINE and try again, or add a "
                           "folder that already holds the model.")
    cancel = cancel or CancelToken()
    progress = progress or (lambda _d, _t: None)
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
        files = [(s.rfilename, int(s.size or 0)) for s in (info.siblings or [])
                 if s.rfilename.endswith(WEIGHT_SUFFIXES)]
        total = sum(size for _, size in files) or 1
        done = 0
        progress(0, total)
        folder: Path | None = None
        for name, size in files:
            cancel.raise_if_cancelled()
            path = Path(hf_hub_download(repo_id, name, local_dir=local_dir))
            folder = folder or path.parents[len(Path(name).parts) - 1]
            done += size
            progress(done, total)
    except (RepositoryNotFoundError, GatedRepoError) as err:
        raise StudioError(f"The hub has no model {repo_id!r} you can download "
                          "(missing, private or gated).") from err
    except HfHubHTTPError as err:
        raise StudioError(f"The hub refused {repo_id!r}: {err}") from err
    except (OSError, ConnectionError) as err:
        raise OfflineError(f"You are offline: the Hugging Face hub cannot be reached ({err}).",
                           hint="Check the network, or add a folder that holds the model.") \
            from err
    if folder is None:
        raise StudioError(f"{repo_id!r} holds no safetensors weights to download.")
    return folder
