"""The out-of-process chip-model client end to end, and the intro tutorial's training on it.

One worker process serves the whole module (it starts, imports JAX and compiles once).
"""

from __future__ import annotations

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import sent_request

import bss2jax as bj
from bss2jax._clients._worker import network_from_request
from bss2jax._hardware._link import _seed
from bss2jax.hardware import configuration_hash

DT = 1e-6


@pytest.fixture(scope="module")
def client():
    with bj.ChipModelClient(seed=1) as client:
        yield client


@pytest.fixture(scope="module")
def small():
    """One small spiking network for every test but the tutorial (one compilation)."""
    net = bj.Sequential(
        [
            bj.Synapse(12, 4, key=jax.random.PRNGKey(2), transform=bj.linear_saturating(60.0)),
            bj.LIF(4, enable_madc_recording=True, record_neuron_id=1),
        ]
    )
    inputs = (jax.random.uniform(jax.random.PRNGKey(3), (30, 2, 12)) < 0.3).astype(jnp.float32)
    return net, inputs


def sine_targets(rng, outputs, time):
    """The tutorial's targets: per output, three sines of random period and sign, normalised."""
    targets = np.zeros((time, 1, outputs))
    for n in range(outputs):
        for _ in range(3):
            period = (0.3 - 2.0) * rng.random() + 2.0
            targets[:, 0, n] += np.sign(rng.random() - 0.5) * np.sin(
                np.linspace(0.0, 2.0 * np.pi / period, time)
            )
    return jnp.asarray(targets / np.abs(targets).max(0), jnp.float32)


def train(net, inputs, targets, backend, *, epochs, learning_rate):
    """The tutorial's loop: Adam on the synapse weights, MSE on the CADC trace."""
    optimiser = optax.adam(learning_rate)

    def loss(weight):
        (readout,) = bj.run(
            eqx.tree_at(lambda n: n.layers[0].weight, net, weight), inputs, backend=backend
        )
        return jnp.mean((readout.membrane_cadc - targets) ** 2)

    @jax.jit
    def step(weight, state):
        value, grad = jax.value_and_grad(loss)(weight)
        with jax.numpy_dtype_promotion("standard"):  # optax's adam promotes (float ** int32)
            updates, state = optimiser.update(grad, state, weight)
        return optax.apply_updates(weight, updates), state, value

    weight = net.layers[0].weight
    state = optimiser.init(weight)
    losses = []
    for _ in range(epochs):
        weight, state, value = step(weight, state)
        losses.append(float(value))
    return losses


def test_intro_tutorial_trains_on_the_chip_client_and_replays(client, tmp_path):
    """Done-when: 128 Poisson inputs -> 3 LI readouts follow three sines (Adam, MSE on the
    CADC trace) with Hardware(ChipModelClient) and with Replay; the loss falls >= 10x.
    Reduced from the tutorial's 200 epochs to 30."""
    rng = np.random.default_rng(0)
    time, inputs_count = 100, 128
    targets = sine_targets(rng, 3, time)
    net = bj.Sequential(
        [
            bj.Synapse(
                inputs_count, 3, key=jax.random.PRNGKey(0), transform=bj.linear_saturating(55.0)
            ),
            bj.LI(
                3,
                tau_mem=10e-6,
                tau_syn=10e-6,
                leak=bj.Mixed(0.0, 80.0),
                shift_cadc_to_first=True,
                trace_scale=1.0 / 45.0,
            ),
        ]
    )
    inputs = (jax.random.uniform(jax.random.PRNGKey(1), (time, 1, inputs_count)) < 0.03).astype(
        jnp.float32
    )
    calls = client.calls
    live = train(
        net, inputs, targets, bj.Hardware(client, record_to=tmp_path), epochs=30, learning_rate=1e-2
    )
    assert live[0] / live[-1] >= 10.0, live
    assert client.calls - calls == 30
    replayed = train(net, inputs, targets, bj.Replay(tmp_path), epochs=30, learning_rate=1e-2)
    assert replayed == live  # bit for bit: same recordings, same numerics


def test_client_answers_like_the_chip_model_in_process(client, small):
    net, inputs = small
    key = jax.random.PRNGKey(7)
    recording = bj.Hardware(client).observe(net, inputs, dt=DT, key=key)
    # The same chip and noise key in this process.
    seed = _seed(np.asarray(key), True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        local = bj.ChipModel(client.chip, client.config).observe(
            net, inputs, dt=DT, key=jax.random.PRNGKey(seed)
        )

    # The worker's warnings (CADC reads outside calix's reliable range) come back too.
    def text(message):
        return message.split(":", 1)[1]

    assert [text(str(w.message)) for w in caught] == [
        text(w) for w in client.warnings[-len(caught) :]
    ]
    got, expected = recording.populations[0], local.populations[0]
    time = inputs.shape[0]  # the chip model's grid has `time` steps, hxtorch's one more
    np.testing.assert_array_equal(np.asarray(got.spikes)[:time], np.asarray(expected.spikes))
    np.testing.assert_allclose(
        np.asarray(got.membrane_cadc)[:time], np.asarray(expected.membrane_cadc), atol=1e-3
    )
    np.testing.assert_allclose(
        np.asarray(got.membrane_madc)[:time], np.asarray(expected.membrane_madc), atol=1e-2
    )
    assert float(got.spikes.sum()) > 0


def test_raw_answer_has_irregular_sample_times(client, small):
    net, inputs = small
    request = sent_request(net, inputs, dt=DT)
    answer = client.execute(request)
    cadc = answer.cadc[0]
    periods = np.diff(np.sort(cadc.times[(cadc.neurons == 0) & (cadc.batch == 0)]))
    assert 1.3e-6 < periods.mean() < 2.1e-6  # ~1.7 us
    assert periods.std() > 1e-9  # jittered, not a regular grid
    assert not np.allclose(cadc.times / DT, np.round(cadc.times / DT))  # off the grid
    assert np.all(cadc.values == np.round(cadc.values)) and cadc.values.max() <= 255
    madc = answer.madc[0]
    assert abs(np.diff(madc.times[madc.batch == 0]).mean() - 34e-9) < 1e-9
    spikes = answer.spikes[0]
    assert spikes.times.size and np.all(
        np.abs(spikes.times / 8e-9 - np.round(spikes.times / 8e-9)) < 1e-3
    )


def test_configuration_is_written_once(client, small):
    net, inputs = small
    backend = bj.Hardware(client)
    before = client.reconfigurations
    backend.observe(net, inputs, dt=DT, key=None)
    backend.observe(net, 1.0 - inputs, dt=DT, key=None)
    assert client.reconfigurations - before == 1
    changed = eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight + 0.5)
    backend.observe(changed, inputs, dt=DT, key=None)
    assert client.reconfigurations - before == 2


def test_worker_errors_and_restart(client, small):
    net, inputs = small
    request = sent_request(net, inputs, dt=DT)
    population = dataclasses.replace(
        request.populations[0], tau_mem=-request.populations[0].tau_mem
    )
    bad = dataclasses.replace(
        request,
        populations=(population,),
        configuration_hash=configuration_hash((population,), request.projections),
    )
    with pytest.raises(
        bj.HardwareError, match="the chip model raised ValueError: `tau_mem` must be positive"
    ):
        client.execute(bad)
    network, names = network_from_request(request)
    assert list(names.values()) == ["population_0"] and network.input_size == 12
    # A dead worker is restarted on the next call (checked with the bad request, which
    # the new worker answers before compiling anything).
    starts = client.starts
    client.cancel()
    assert not client.running
    with pytest.raises(bj.HardwareError, match="`tau_mem` must be positive"):
        client.execute(bad)
    assert client.starts == starts + 1 and client.running


def test_worker_rebuilds_an_adex_population_from_the_request():
    # The worker sees only the request: every AdEx flag and term must survive the trip.
    adex = bj.AdEx(
        3,
        exponential_slope=0.04,
        exponential_threshold=130.0,
        subthreshold_adaptation_strength=0.3,
        spike_triggered_adaptation_increment=2.0,
        tau_adap=50e-6,
        subthreshold_adaptation=False,
    )
    net = bj.Sequential([bj.Synapse(4, 3, key=jax.random.PRNGKey(3)), adex])
    inputs = jnp.zeros((5, 1, 4), jnp.float32)
    network, names = network_from_request(sent_request(net, inputs, dt=1e-6))
    rebuilt = network.population(names[0])
    assert isinstance(rebuilt, bj.AdEx) and not rebuilt.subthreshold_adaptation
    assert rebuilt.exponential and rebuilt.spike_triggered_adaptation and rebuilt.fire
    for name, value in dict(
        exponential_slope=0.04,
        exponential_threshold=130.0,
        subthreshold_adaptation_strength=0.3,
        spike_triggered_adaptation_increment=2.0,
        tau_adap=50e-6,
    ).items():
        np.testing.assert_allclose(bj.hardware_value(getattr(rebuilt, name)), value, rtol=1e-6)
