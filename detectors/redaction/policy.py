"""Versioned redaction policy: what to do with each entity, and where to look in a trace.

A policy is a YAML file under ``deploy/config/`` (``redaction-policy.yaml``). Its
``version`` and a hash of its content are stored with every redacted trace, so an
auditor can tell which rules produced a given record. The pseudonym key is never in the
file: the policy only *names* an environment variable or a file that holds it.

>>> p = RedactionPolicy(version="t1", entities={"EMAIL_ADDRESS": "pseudonym"})
>>> p.action_for("EMAIL_ADDRESS", "pii").value, p.action_for("AWS_ACCESS_KEY_ID", "secret").value
('pseudonym', 'mask')
>>> p.needs_key, len(p.content_hash)
(True, 16)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MIN_KEY_BYTES = 16


class Action(StrEnum):
    """What happens to a found value."""

    mask = "mask"  # replaced by the mask template, e.g. [EMAIL_ADDRESS]
    pseudonym = "pseudonym"  # keyed HMAC, e.g. [EMAIL_ADDRESS:7f3a9c2e1b]; joins still work
    drop_field = "drop_field"  # the whole field is replaced by the drop marker


class RedactionPolicyError(ValueError):
    """A policy file or key that cannot be used; the message names the field and the fix."""


class KeySource(BaseModel):
    """Where the pseudonym key lives: an environment variable and/or a file (first found wins)."""

    model_config = ConfigDict(extra="forbid")
    env: str | None = None
    file: str | None = None

    def resolve(self, environ: Mapping[str, str] | None = None) -> bytes | None:
        env = os.environ if environ is None else environ
        if self.env and env.get(self.env):
            return env[self.env].encode()
        if self.file and Path(self.file).is_file():
            return Path(self.file).read_bytes().strip()
        return None

    def describe(self) -> str:
        where = [f"environment variable {self.env}" if self.env else "", f"file {self.file}" if self.file else ""]
        return " or ".join(w for w in where if w) or "nowhere (pseudonym_key is empty)"


class TraceScope(BaseModel):
    """Which parts of a trace mapping are scanned, and which are pseudonymised whole.

    Selectors are dotted paths; ``[*]`` walks every list item and ``*`` every mapping
    value. Anything under a selected node is scanned, nested JSON included. Identifier
    fields that serving controls (ids, route, tenant, model names, versions, timestamps,
    numbers) are left out on purpose.
    """

    model_config = ConfigDict(extra="forbid")
    scan: list[str] = Field(
        default_factory=lambda: [
            "input_messages[*].content",
            "output_messages[*].content",
            "tool_calls[*].arguments",
            "tool_calls[*].result",
            "error_message",
            "metadata.*",
        ]
    )
    pseudonymise: list[str] = Field(default_factory=list)


class RedactionPolicy(BaseModel):
    """The policy model; load a file with :meth:`load`."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    mask_template: str = "[{entity}]"
    pseudonym_template: str = "[{entity}:{digest}]"
    pseudonym_chars: int = Field(default=10, ge=8, le=64)
    drop_marker: str = "[DROPPED:{entity}]"
    pseudonym_key: KeySource = Field(default_factory=lambda: KeySource(env="WARDEN_REDACTION_KEY"))
    defaults: dict[str, Action] = Field(
        default_factory=lambda: {"pii": Action.mask, "secret": Action.mask, "other": Action.mask}
    )
    entities: dict[str, Action] = Field(default_factory=dict)
    disabled: list[str] = Field(default_factory=list)
    # Extra sensitive JSON keys: key (any case/separators) -> entity; extends
    # detectors.redaction.keys' documented lists.
    keys: dict[str, str] = Field(default_factory=dict)
    trace: TraceScope = Field(default_factory=TraceScope)

    @model_validator(mode="after")
    def _templates(self) -> RedactionPolicy:
        for name in ("mask_template", "pseudonym_template", "drop_marker"):
            template = getattr(self, name)
            try:
                template.format(entity="E", digest="d")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{name} {template!r} is not a valid template ({exc}); use only "
                    "{entity} and {digest} placeholders"
                ) from exc
        if "{digest}" not in self.pseudonym_template:
            raise ValueError("pseudonym_template must contain {digest}, or pseudonyms cannot be joined on")
        return self

    @field_validator("keys")
    @classmethod
    def _normalise_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        out = {"".join(ch for ch in k.lower() if ch.isascii() and ch.isalnum()): v for k, v in keys.items()}
        if "" in out:
            raise ValueError("keys: a key needs at least one letter or digit")
        return out

    @classmethod
    def load(cls, path: str | Path) -> RedactionPolicy:
        """Read and validate a policy YAML file; errors name the file and the field."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RedactionPolicyError(f"cannot read redaction policy {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise RedactionPolicyError(f"redaction policy {path} must be a YAML mapping with a `version:`")
        if isinstance(raw.get("version"), int | float):
            raw["version"] = str(raw["version"])  # `version: 3` should not be a type error
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise RedactionPolicyError(f"invalid redaction policy {path}:\n{exc}") from exc

    def action_for(self, entity: str, category: str) -> Action:
        """The entity's own action, else its category default, else ``mask``."""
        return self.entities.get(entity) or self.defaults.get(category) or Action.mask

    @property
    def needs_key(self) -> bool:
        """True when some rule produces pseudonyms, so a key must be supplied."""
        actions = [*self.entities.values(), *self.defaults.values()]
        return Action.pseudonym in actions or bool(self.trace.pseudonymise)

    @property
    def content_hash(self) -> str:
        """Stable hash of the policy's meaning (key order and comments do not change it)."""
        data = self.model_dump(mode="json")
        if not data.get("keys"):
            del data["keys"]  # a policy without `keys:` keeps the hash it had before they existed
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def resolve_key(self, environ: Mapping[str, str] | None = None) -> bytes | None:
        """The pseudonym key from the named environment variable or file (never logged)."""
        key = self.pseudonym_key.resolve(environ)
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise RedactionPolicyError(
                f"pseudonym key from {self.pseudonym_key.describe()} is {len(key)} bytes; "
                f"use at least {MIN_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
            )
        return key

    def change_event(self) -> dict[str, Any]:
        """What the change ledger records when this policy is loaded (no key material)."""
        return {
            "kind": "redaction_policy.loaded",
            "version": self.version,
            "content_hash": self.content_hash,
            "defaults": {k: v.value for k, v in sorted(self.defaults.items())},
            "entities": {k: v.value for k, v in sorted(self.entities.items())},
            "disabled": sorted(self.disabled),
            "keys": dict(sorted(self.keys.items())),
            "scan": list(self.trace.scan),
            "pseudonymise": list(self.trace.pseudonymise),
        }
