"""The studio's settings: one typed object that the window and the command line both read.

Three layers, each overriding the one before: the settings file (``studio.json`` in the user's
config folder; ``STUDIO_CONFIG_DIR`` names another folder), ``STUDIO_*`` environment
variables, then flags. Model folders add up instead: every folder named in the file, in
``STUDIO_MODEL_DIRS`` and by ``--model-dir`` is scanned. Window geometry and panel state stay
in QSettings; what the engine and the user's choices need lives here.

``load_settings(**flags)`` gives the layered value for a run; ``saved_settings()`` gives the
file alone, which is what an editor (the preferences dialog, the model manager) changes and
hands to ``save_settings``, so that an environment variable or a flag is never written back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from studio.core.errors import InvalidRequestError

SETTINGS_FILE_NAME = "studio.json"
ENV_PREFIX = "STUDIO_"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
                 "float": "float32"}
THEMES = ("dark", "light")
DEFAULT_AUTOSAVE_MINUTES = 2.0

# The file layer while ``load_settings`` builds a value; None: a plain value (no file, no env).
_FILE_LAYER: ContextVar[dict[str, Any] | None] = ContextVar("_FILE_LAYER", default=None)


class Settings(BaseSettings):
    """What the user chose: device, precision, model folders, default model, window options.

    ``Settings(device="cpu")`` is a plain value (defaults for the rest); ``load_settings``
    layers the file, the environment and flags.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    device: str = Field("auto", description="auto, cuda, cuda:N, mps or cpu")
    dtype: str = Field("auto", description="auto, float16, bfloat16 or float32")
    model_dirs: tuple[str, ...] = Field((), description="folders scanned for models")
    hf_cache: bool = Field(True, description="also scan the Hugging Face cache")
    default_model: str = Field("", description="model used when none is named")
    autosave_minutes: float = Field(DEFAULT_AUTOSAVE_MINUTES, ge=0,
                                    description="autosave interval of the window; 0: off")
    theme: str = Field("dark", description="dark or light")
    servers: tuple[str, ...] = Field((), description="ComfyUI servers to generate on "
                                     "(http(s)://host:port); none: the local engine")
    server_token: str = Field("", description="access token sent to the servers (bearer)")
    trust_servers: bool = Field(False, description="accept server certificates that do "
                                "not verify")

    @field_validator("device", mode="before")
    @classmethod
    def _check_device(cls, value: Any) -> str:
        device = str(value or "auto").strip().lower()
        kind, _, index = device.partition(":")
        if kind not in DEVICES or (index and not (kind == "cuda" and index.isdigit())):
            raise ValueError(f"Unknown device {value!r}; use one of {', '.join(DEVICES)} "
                             "(or cuda:N)")
        return device

    @field_validator("dtype", mode="before")
    @classmethod
    def _check_dtype(cls, value: Any) -> str:
        dtype = str(value or "auto").strip().lower()
        dtype = DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in DTYPES:
            raise ValueError(f"Unknown precision {value!r}; use one of {', '.join(DTYPES)}")
        return dtype

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _check_model_dirs(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        folders: list[str] = []
        for item in value or ():
            folder = str(Path(item).expanduser())
            if folder not in folders:
                folders.append(folder)
        return tuple(folders)

    @field_validator("servers", mode="before")
    @classmethod
    def _check_servers(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        servers: list[str] = []
        for item in value or ():
            url = str(item).strip()
            if "://" not in url:
                url = "http://" + url
            scheme, _, rest = url.partition("://")
            if scheme not in ("http", "https") or not rest.strip("/"):
                raise ValueError(f"Server address {item!r} must look like http://host:8188")
            url = url.rstrip("/")
            if url not in servers:
                servers.append(url)
        return tuple(servers)

    @field_validator("theme", mode="before")
    @classmethod
    def _check_theme(cls, value: Any) -> str:
        theme = str(value or "dark").strip().lower()
        if theme not in THEMES:
            raise ValueError(f"Unknown theme {value!r}; use {' or '.join(THEMES)}")
        return theme

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_layer = _FILE_LAYER.get()
        if file_layer is None:
            return (init_settings,)
        return (init_settings, _Environment(settings_cls),
                InitSettingsSource(settings_cls, init_kwargs=file_layer))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (and checked)."""
        return type(self)(**{**self.model_dump(), **changes})

    def with_model_dir(self, folder: str | os.PathLike[str]) -> Settings:
        """A copy that also scans ``folder`` (the same value if it already does)."""
        folder = str(Path(folder).expanduser())
        if folder in self.model_dirs:
            return self
        return self.replace(model_dirs=(*self.model_dirs, folder))


class _Environment(EnvSettingsSource):
    """``STUDIO_*`` variables; ``STUDIO_MODEL_DIRS`` adds folders (see ``env_model_dirs``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "model_dirs":
            return None, field_name, False
        if field_name == "servers":  # STUDIO_SERVERS: addresses separated by commas or spaces
            raw = os.environ.get(f"{ENV_PREFIX}SERVERS")
            if raw is None:
                return None, field_name, False
            return json.dumps(raw.replace(",", " ").split()), field_name, True
        return super().get_field_value(field, field_name)


def settings_path() -> Path:
    """The settings file: ``studio.json`` in the user's config folder."""
    from studio.core.styles import user_config_dir

    return user_config_dir() / SETTINGS_FILE_NAME


def env_model_dirs() -> tuple[str, ...]:
    """Folders named in ``STUDIO_MODEL_DIRS`` (``os.pathsep``-separated)."""
    raw = os.environ.get(f"{ENV_PREFIX}MODEL_DIRS", "")
    return tuple(part for part in raw.split(os.pathsep) if part.strip())


def _file_values(file: Path) -> dict[str, Any]:
    """The file's values that are valid; an unreadable file or a bad value counts as unset."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in Settings.model_fields:
            continue
        try:
            Settings(**{key: value})
        except ValidationError:
            continue
        values[key] = value
    return values


def saved_settings(file: Path | None = None) -> Settings:
    """The settings file alone (defaults where it says nothing): what an editor changes."""
    return Settings(**_file_values(file or settings_path()))


@contextmanager
def _layered(file_layer: dict[str, Any]) -> Iterator[None]:
    token = _FILE_LAYER.set(file_layer)
    try:
        yield
    finally:
        _FILE_LAYER.reset(token)


def load_settings(file: Path | None = None, **flags: Any) -> Settings:
    """The settings for this run: the file < ``STUDIO_*`` environment < ``flags``.

    A flag that is None is not given. ``model_dirs`` flags add to the folders of the file and
    of ``STUDIO_MODEL_DIRS``. A bad value in the environment or a flag raises
    ``InvalidRequestError`` with one line that names it; a bad value in the file is ignored.
    """
    extra_dirs = flags.pop("model_dirs", None) or ()
    given = {name: value for name, value in flags.items() if value is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise TypeError(f"load_settings() got unknown settings: {', '.join(unknown)}")
    try:
        with _layered(_file_values(file or settings_path())):
            settings = Settings(**given)
        for folder in (*env_model_dirs(), *extra_dirs):
            settings = settings.with_model_dir(folder)
    except ValidationError as err:
        raise InvalidRequestError(_one_line(err, set(given))) from None
    return settings


def _one_line(err: ValidationError, flags: set[str]) -> str:
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    where = (f"--{name.replace('_', '-')}" if name in flags
             else f"{ENV_PREFIX}{name.upper()}" if name else "settings")
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}."


def save_settings(settings: Settings, file: Path | None = None) -> Path:
    """Write ``settings`` to the settings file atomically; returns the file."""
    file = file or settings_path()
    file.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json")
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(file)
    return file
