"""Placement onto 512 neuron circuits: the partitioning rule, capacity errors, runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj


def _layer(fan_in, size, neuron=bj.LIF):
    return bj.Sequential([bj.Synapse(fan_in, size, weight=jnp.zeros((size, fan_in))), neuron(size)])


@pytest.mark.parametrize(
    "fan_in, circuits, per_run",
    [(1, 1, 512), (128, 1, 512), (129, 2, 256), (256, 2, 256), (300, 4, 128), (784, 8, 64)],
)
def test_partitioning_rule(fan_in, circuits, per_run):
    assert bj.circuits_per_neuron(fan_in) == circuits
    assert bj.neurons_per_run(fan_in) == per_run


def test_784_input_layer_needs_8_circuits_and_fits_64_neurons_per_run():
    placement = bj.place(_layer(784, 64))
    layer = placement.populations[0]
    assert layer.circuits_per_neuron == 8 and placement.runs == 1
    assert layer.circuits.shape == (64, 8)
    assert len(np.unique(layer.circuits)) == 512  # the whole chip, each circuit once
    # each neuron: the same 4 columns in both hemispheres
    top, bottom = layer.circuits[:, :4], layer.circuits[:, 4:]
    assert np.all(top < 256) and np.array_equal(bottom - 256, top)
    with pytest.raises(bj.PlacementError, match=r"520 neuron circuits.*512.*65 neurons x 8"):
        bj.place(_layer(784, 65))


def test_cramer_full_chip_layout_fits():
    key = jax.random.PRNGKey(0)
    net = bj.Sequential(
        [bj.Synapse(256, 246, key=key), bj.LIF(246), bj.Synapse(246, 10, key=key), bj.LI(10)]
    )
    placement = bj.place(net)
    assert placement.runs == 1 and placement.circuits_used() == 512
    assert [p.circuits_per_neuron for p in placement.populations.values()] == [2, 2]
    all_circuits = np.concatenate([p.circuits.ravel() for p in placement.populations.values()])
    assert len(np.unique(all_circuits)) == 512
    with pytest.raises(bj.PlacementError, match="514 neuron circuits"):
        bj.place(
            bj.Sequential(
                [
                    bj.Synapse(256, 247, key=key),
                    bj.LIF(247),
                    bj.Synapse(247, 10, key=key),
                    bj.LI(10),
                ]
            )
        )


def test_too_large_network_raises_and_partition_splits_into_runs():
    net = _layer(784, 200)
    with pytest.raises(bj.PlacementError, match="1600 neuron circuits.*partition=True"):
        bj.place(net)
    placement = bj.place(net, partition=True)
    layer = placement.populations[0]
    assert placement.runs == 4  # 64 + 64 + 64 + 8
    assert np.bincount(layer.runs).tolist() == [64, 64, 64, 8]
    # every run reuses the chip from its first circuit
    assert np.array_equal(layer.circuits[:64], layer.circuits[64:128])
    # a following layer continues in the last run
    key = jax.random.PRNGKey(0)
    two = bj.Sequential(
        [bj.Synapse(784, 200, key=key), bj.LIF(200), bj.Synapse(200, 10, key=key), bj.LI(10)]
    )
    placement = bj.place(two, partition=True)
    assert placement.runs == 4 and set(placement.populations[1].runs.tolist()) == {3}


def test_recurrent_group_must_share_a_run():
    key = jax.random.PRNGKey(0)
    net = bj.Network(
        {"a": bj.LIF(300)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(10, 300, key=key)),
            bj.Projection("a", "a", bj.Synapse(300, 300, key=key)),
        ],
        input_size=10,
    )
    # fan-in 310 -> 4 circuits -> 1200 > 512, and recurrence forbids splitting
    with pytest.raises(bj.PlacementError, match="recurrent"):
        bj.place(net, partition=True)
    small = bj.Network(
        {"a": bj.LIF(20)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(10, 20, key=key)),
            bj.Projection("a", "a", bj.Synapse(20, 20, key=key)),
        ],
        input_size=10,
    )
    placement = bj.place(small)
    assert placement.populations["a"].fan_in == 30
    assert placement.populations["a"].inputs == ((0, 0), (1, 10))


def test_single_circuit_neurons_fill_both_hemispheres():
    placement = bj.place(_layer(4, 512, bj.LI))
    circuits = placement.populations[0].circuits[:, 0]
    assert sorted(circuits.tolist()) == list(range(512))
    with pytest.raises(bj.PlacementError, match="513 neuron circuits"):
        bj.place(_layer(4, 513, bj.LI))


def test_fan_in_argument_validation():
    with pytest.raises(ValueError, match="`fan_in`"):
        bj.circuits_per_neuron(-1)
