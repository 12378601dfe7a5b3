"""Kafka TLS/SASL from settings, for Faust (aiokafka) and confluent-kafka clients alike.

Secrets come from the environment or files named there (pydantic ``SecretStr``); they
are never logged: structlog's processors see only the redacted settings dump.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.config import KafkaSecurity


def faust_credentials(security: KafkaSecurity) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for plaintext)."""
    import faust

    protocol = security.security_protocol.upper()
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=security.ssl_cafile)
        if security.ssl_certfile:
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile)
    if protocol.startswith("SASL"):
        password = security.sasl_password.get_secret_value() if security.sasl_password else ""
        mechanism = (security.sasl_mechanism or "PLAIN").upper()
        if mechanism.startswith("SCRAM"):
            return _scram(security.sasl_username or "", password, mechanism, context)
        return faust.SASLCredentials(username=security.sasl_username, password=password, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _scram(username: str, password: str, mechanism: str, context: ssl.SSLContext | None) -> Any:
    import faust
    from faust.types.auth import SASLMechanism

    scram = SASLMechanism.SCRAM_SHA_512 if mechanism.endswith("512") else SASLMechanism.SCRAM_SHA_256
    return faust.SASLCredentials(username=username, password=password, ssl_context=context, mechanism=scram)
