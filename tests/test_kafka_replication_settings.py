"""Replication settings (issue 21, item 1) without a broker: what every created topic and
Faust table carries. The cluster itself runs in ``make test-long`` (tests/test_kafka_cluster.py)."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import ValidationError

from streams.config import WardenSettings
from streams.kafka_cluster import cluster_bootstrap, node_ports
from streams.topics import new_topics, topic_specs
from tests.infra import KAFKA_SCRIPT


def test_one_broker_by_default() -> None:
    settings = WardenSettings(_env_file=None)
    assert settings.kafka_replication_factor == 1
    assert settings.min_insync_replicas == 1
    assert all(t.replication_factor == 1 and t.config["min.insync.replicas"] == "1" for t in new_topics(settings))


@pytest.mark.parametrize(("replicas", "insync"), [(2, 2), (3, 2), (5, 2)])
def test_a_cluster_keeps_taking_writes_with_one_broker_down(replicas: int, insync: int) -> None:
    settings = WardenSettings(kafka_replication_factor=replicas)
    assert settings.min_insync_replicas == insync
    topics = new_topics(settings)
    assert len(topics) == len(topic_specs(settings))
    for topic in topics:
        assert topic.replication_factor == replicas
        assert topic.config["min.insync.replicas"] == str(insync)
    assert settings.replicated_topic_config() == {"min.insync.replicas": str(insync)}


def test_existing_topics_are_left_alone() -> None:
    settings = WardenSettings(kafka_replication_factor=3)
    every = {settings.topic(spec.name) for spec in topic_specs(settings)}
    raw = settings.topic("traces.raw.v1")
    assert [t.topic for t in new_topics(settings, every - {raw})] == [raw]


def test_more_in_sync_replicas_than_copies_is_refused() -> None:
    with pytest.raises(ValidationError, match="exceeds WARDEN_KAFKA_REPLICATION_FACTOR=3"):
        WardenSettings(kafka_replication_factor=3, kafka_min_insync_replicas=4)
    assert WardenSettings(kafka_replication_factor=3, kafka_min_insync_replicas=3).min_insync_replicas == 3


def test_the_script_and_the_cli_agree_on_the_cluster_ports() -> None:
    assert node_ports(29000, 3) == [29000, 29002, 29004]
    out = subprocess.run(["bash", str(KAFKA_SCRIPT), "cluster-bootstrap"], capture_output=True, text=True,
                         env={"KAFKA_PORT": "29000", "KAFKA_BROKERS": "3", "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == cluster_bootstrap(29000, 3) == "127.0.0.1:29000,127.0.0.1:29002,127.0.0.1:29004"
