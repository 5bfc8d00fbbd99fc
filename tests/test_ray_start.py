"""A local Ray cluster listens on loopback only; a given address is used as it is (Ray is not
started here: ray.init is replaced by a recorder)."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from ray._private import ray_constants, services  # noqa: E402

from delift_core import distributed  # noqa: E402


@pytest.fixture()
def calls(monkeypatch):
    recorded = []

    def fake_init(**kwargs):
        node = kwargs.get("_node_ip_address")
        # What Ray itself makes of the node address at this moment (ray.init does the same).
        resolved = services.resolve_ip_for_localhost(node) if node else None
        recorded.append({"kwargs": kwargs, "node": resolved})

    monkeypatch.setattr(distributed.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.ray, "init", fake_init)
    return recorded


def test_local_cluster_binds_to_loopback_without_a_dashboard(calls):
    saved = ray_constants.ENABLE_RAY_CLUSTER
    assert distributed.start_ray(3) is True
    (call,) = calls
    assert call["kwargs"]["_node_ip_address"] == "127.0.0.1"
    # Ray's servers listen on the node address: it must stay loopback, not become the
    # machine's network address.
    assert call["node"] == "127.0.0.1"
    assert call["kwargs"]["include_dashboard"] is False
    assert call["kwargs"]["num_cpus"] == 3
    assert saved == ray_constants.ENABLE_RAY_CLUSTER  # lent for the start only


def test_a_given_cluster_address_is_used_as_is(calls):
    assert distributed.start_ray(2, address="10.0.0.5:6379") is True
    (call,) = calls
    assert call["kwargs"]["address"] == "10.0.0.5:6379"
    assert "_node_ip_address" not in call["kwargs"]


def test_a_failed_start_still_restores_ray_settings(monkeypatch):
    saved = ray_constants.ENABLE_RAY_CLUSTER

    def failing(**kwargs):
        raise RuntimeError("no room")

    monkeypatch.setattr(distributed.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.ray, "init", failing)
    with pytest.raises(distributed.ResourceError, match="local Ray cluster"):
        distributed.start_ray(1)
    assert saved == ray_constants.ENABLE_RAY_CLUSTER
