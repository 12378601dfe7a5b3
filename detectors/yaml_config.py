"""One way to load a versioned YAML configuration file into its pydantic model."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def load_yaml_model(path: str | Path, model: type[Model], expected: str, what: str = "") -> Model:
    """Read ``path`` and validate it as ``model``; errors name the file and the field.

    ``expected`` says what the top level should hold, for the error when it is not a mapping;
    ``what`` (e.g. ``"breaker policy"``) prefixes every error.
    """
    path = Path(path)
    where = f"{what} {path}" if what else str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with {expected}")
    try:
        return model.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
