"""The LiteLLM proxy's Warden callback (``litellm_settings.callbacks: warden_callbacks.warden``
in config.yaml beside it): one ``WardenLiteLLMLogger`` publishing to the raw topic with the
same settings as the workers (``KAFKA_BOOTSTRAP``, ``WARDEN_TOPIC_PREFIX``, TLS/SASL), so a
proxy needs no Warden configuration of its own."""

import os

from streams.clients.litellm import WardenLiteLLMLogger
from streams.config import WardenSettings
from streams.publisher import TracePublisher

settings = WardenSettings()
warden = WardenLiteLLMLogger(
    publisher=TracePublisher(settings.kafka_bootstrap, settings.topic("traces.raw.v1"), security=settings.security),
    tenant=os.environ.get("WARDEN_LITELLM_TENANT", "default"),
    application=os.environ.get("WARDEN_LITELLM_APPLICATION", "litellm-proxy"),
)
