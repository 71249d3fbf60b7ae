"""The learned, per-neuron F-I phase prior (noble/operator/phase_net.py): untrained it leaves the prior
as fitted, and trained on spike trains whose timing the prior gets wrong in a feature-dependent way it puts
the phase's spikes where the trains have them, on neurons it never saw."""

from __future__ import annotations

import numpy as np
import torch

from noble.operator.config import (APRenderConfig, EmbeddingConfig, FNOConfig, PhaseNetConfig, StimulusProtocol,
                                   SurrogateConfig)
from noble.operator.model import NobleOperator
from noble.operator.phase import first_spike_latency_ms
from noble.operator.phase_net import PhaseNet, train_phase_net
from noble.operator.render import phase_spikes

NAMES = ["I_thr_pA", "fi_lin_Hz_per_pA", "fi_quad_Hz_per_pA2"]
LOWS, HIGHS = [40.0, 0.2, 0.0], [100.0, 0.4, 1e-4]
DT, T = 0.05, 8000  # 400 ms at 0.05 ms; the operator (and the phase) on 0.2 ms
START, END = 50.0, 350.0
LATENCY = [40.0, 0.5]  # the prior's first-spike law, L = a r^-b


def config(phase_net: PhaseNetConfig | None) -> SurrogateConfig:
    emb = EmbeddingConfig(feature_names=NAMES, n_frequencies=1, fi_phase=True, fi_rate="quadratic",
                          phase_warp=[0.0, 10.0, 0.0, 1.0], first_spike_latency=LATENCY, spike_phase=0.5,
                          lows=LOWS, highs=HIGHS)
    return SurrogateConfig(
        name="t", family="hh", feature_names=NAMES, feature_units=["pA", "Hz/pA", "Hz/pA^2"],
        feature_ranges={n: (lo, hi) for n, lo, hi in zip(NAMES, LOWS, HIGHS)}, embedding=emb,
        fno=FNOConfig(n_modes=8, hidden_channels=4, n_layers=1, time_fold=4), stim_scale_pA=300.0,
        v_mean_mV=-60.0, v_std_mV=10.0, dt_ms=DT, n_time=T, stimulus=StimulusProtocol(),
        population=[[70.0, 0.3, 0.0]], render=APRenderConfig(coarse_dt_ms=0.2, phase_net=phase_net))


def true_trains(features: np.ndarray, amps: np.ndarray) -> list[np.ndarray]:
    """Spike peaks (ms) of 'neurons' whose rate is the F-I parabola's times 0.75..1.35 by fi_lin (a timing the
    features determine but the prior's shape misses) and whose first spike comes at 0.6 x the prior's latency."""
    out = []
    for (i_thr, lin, quad), a in zip(features, amps):
        x = a - i_thr
        r = lin * x + quad * x * x
        m = 0.75 + 3.0 * (lin - 0.2)
        t = START + 0.6 * float(first_spike_latency_ms(torch.tensor(r), LATENCY))
        train = []
        while t < END - 5.0:
            train.append(t)
            t += 1000.0 / (r * m)
        out.append(np.array(train))
    return out


def first5_error_ms(net: NobleOperator, features: np.ndarray, stim: np.ndarray, trains: list[np.ndarray]) -> float:
    with torch.no_grad():
        s_op = torch.as_tensor(stim).reshape(len(stim), -1, net.coarse).mean(-1)
        _rate, phi = net.prior_phase(torch.as_tensor(features, dtype=torch.float32), s_op)
    sp = phase_spikes(phi, net.op_dt_ms, 0.5, 300.0)
    errs = []
    for r, true in enumerate(trains):
        got = sp.time_ms[sp.trace == r].numpy()
        k = min(5, len(got), len(true))
        errs.extend(np.abs(got[:k] - true[:k]))
    return float(np.median(errs))


def population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = np.column_stack([rng.uniform(40, 100, n), rng.uniform(0.2, 0.4, n), np.zeros(n)])
    amps = rng.uniform(150, 300, n)
    t = np.arange(T) * DT
    stim = (amps[:, None] * ((t >= START) & (t < END))[None]).astype(np.float32)
    return feats, amps, stim


def test_an_untrained_phase_net_leaves_the_prior_unchanged() -> None:
    torch.manual_seed(0)
    plain, learned = NobleOperator(config(None)), NobleOperator(config(PhaseNetConfig()))
    feats, _amps, stim = population(4, 0)
    f = torch.as_tensor(feats, dtype=torch.float32)
    s_op = torch.as_tensor(stim).reshape(4, -1, 4).mean(-1)
    for a, b in zip(plain.prior_phase(f, s_op), learned.prior_phase(f, s_op)):
        torch.testing.assert_close(a, b)


def test_the_corrections_follow_the_drive_sample_by_sample() -> None:
    """The MLP runs once per distinct (trace, drive) pair; gathered back, that is the MLP at every sample."""
    torch.manual_seed(0)
    pn = PhaseNet(3, PhaseNetConfig())
    torch.nn.init.normal_(pn.mlp[-1].weight, std=0.5)
    x = torch.rand(3, 3)
    drive = torch.zeros(3, 500)
    drive[0, 100:300] = 0.5  # a step
    drive[1] = torch.linspace(-0.2, 0.8, 500)  # a ramp: every sample distinct
    drive[2, 50:] = 0.3
    drive[2, 400:] = 0.9  # two steps
    got = pn(x, drive)
    assert got.shape == (3, 500, 4) and float(got.detach().abs().max()) > 0.1
    torch.testing.assert_close(got, pn.corrections(x, drive))


def test_the_phase_rate_computed_per_run_equals_the_per_sample_formula() -> None:
    """`phase_rate_by_runs` (inference: rate, corrections and corrected terms once per run of equal drive) is
    `phase_rate` on every sample, values and gradients in the features (the fit's surrogate stage needs them), on
    steps, two-step protocols and a noisy drive where every sample is its own run."""
    from noble.operator.embedding import normalise
    from noble.operator.phase import drive_clock_ms, rate_Hz
    from noble.operator.phase_net import phase_rate, phase_rate_by_runs

    torch.manual_seed(0)
    net = NobleOperator(config(PhaseNetConfig()))
    torch.nn.init.normal_(net.phase_net.mlp[-1].weight, std=0.5)
    feats, _amps, stim = population(3, 1)
    s = torch.as_tensor(stim).reshape(3, -1, 4).mean(-1)
    s[1, 600:] += 40.0  # a second step
    s[2] = s[2] + 30.0 * torch.randn(s.shape[1])  # noise: every sample differs
    e = net.embedding_cfg
    f = torch.as_tensor(feats, dtype=torch.float32).requires_grad_(True)
    on = s > f[:, 0, None]
    clock = drive_clock_ms(on, 0.2)
    x = normalise(f, torch.as_tensor(LOWS), torch.as_tensor(HIGHS))
    drive = net.in_normalizer.transform(s)
    ref = phase_rate(rate_Hz(f, NAMES, s, "quadratic"), on, clock, net.phase_net(x, drive), e.phase_warp, LATENCY, 0.5)
    flat = s.reshape(-1)
    got = phase_rate_by_runs(net.phase_net, x, drive,
                             lambda rows, first: rate_Hz(f[rows], NAMES, flat[first, None], "quadratic")[:, 0],
                             on, clock, e.phase_warp, LATENCY, 0.5)
    assert float(ref.detach().max()) > 10.0  # the neurons fire
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-4)
    g_ref = torch.autograd.grad(ref.sum(), f, retain_graph=True)[0]
    g_got = torch.autograd.grad(got.sum(), f)[0]
    torch.testing.assert_close(g_got, g_ref, rtol=1e-4, atol=1e-3)


def test_the_learned_prior_puts_spikes_where_unseen_neurons_fire() -> None:
    torch.manual_seed(0)
    net = NobleOperator(config(PhaseNetConfig(steps=300, batch=16, lr=1e-2)))
    feats, amps, stim = population(96, 1)
    trains = true_trains(feats, amps)
    rows = np.concatenate([np.full(len(tr), r) for r, tr in enumerate(trains)])
    index = np.concatenate([np.arange(len(tr)) for tr in trains])
    fit, held = np.arange(64), np.arange(64, 96)
    before = first5_error_ms(net, feats[held], stim[held], [trains[r] for r in held])
    report = train_phase_net(net, feats, stim, rows, np.concatenate(trains), index, fit, held, seed=0, progress=False)
    after = first5_error_ms(net, feats[held], stim[held], [trains[r] for r in held])
    assert before > 3.0  # the prior alone: its latency law and rate are off by design
    assert after < 0.1 * before and after < 0.5, (before, after, report)  # ~0.1 ms: the 0.2 ms grid
    assert report["val_first5_ms_after"] < report["val_first5_ms_before"]
    with torch.no_grad():  # still silent where the drive is subthreshold: phi is 0 before the step
        _r, phi = net.prior_phase(torch.as_tensor(feats[:4], dtype=torch.float32),
                                  torch.as_tensor(stim[:4]).reshape(4, -1, 4).mean(-1))
    assert float(phi[:, : int(START / 0.2)].abs().max()) == 0.0


def test_spike_times_from_the_prior_draw_aps_where_the_learned_prior_puts_them() -> None:
    """render.spike_times 'prior': the FNO draws only the subthreshold voltage (one output channel per fold) and
    the phase the renderer reads is the learned prior's, exactly; without phase_net the config is refused."""
    import pytest
    from pydantic import ValidationError

    cfg = config(PhaseNetConfig())
    cfg = cfg.model_copy(update={"render": cfg.render.model_copy(update={"spike_times": "prior"})})
    torch.manual_seed(0)
    net = NobleOperator(cfg).eval()
    assert net.fno.out_channels == cfg.fno.time_fold
    feats, _amps, stim = population(3, 1)
    f, s = torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(stim)
    with torch.no_grad():
        _v, phi = net.operator(f, s)
        _rate, prior = net.prior_phase(f, s.reshape(3, -1, net.coarse).mean(-1))
    assert torch.equal(phi, prior) and float(phi[:, -1].min()) > 1.5  # every neuron fires
    with pytest.raises(ValidationError, match="phase_net"):
        APRenderConfig(coarse_dt_ms=0.2, spike_times="prior")


def test_prior_with_rebound_uses_the_operator_phase_only_before_the_drive_first_crosses_rheobase() -> None:
    """'prior_with_rebound': the FNO's phase correction counts until the drive first exceeds I_thr (a
    hyperpolarising step's rebound), the learned prior alone from then on, so a step's spikes are the prior's."""
    cfg = config(PhaseNetConfig())
    cfg = cfg.model_copy(update={"render": cfg.render.model_copy(update={"spike_times": "prior_with_rebound"})})
    torch.manual_seed(0)
    net = NobleOperator(cfg).eval()
    assert net.fno.out_channels == 2 * cfg.fno.time_fold
    feats, _amps, stim = population(2, 2)
    stim[1] = -stim[1]  # a hyperpolarising step: never suprathreshold
    f, s = torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(stim)
    s_op = s.reshape(2, -1, net.coarse).mean(-1)
    with torch.no_grad():
        _v, phi = net.operator(f, s)
        _rate, prior = net.prior_phase(f, s_op)
    t_op = np.arange(s_op.shape[1]) * net.op_dt_ms
    after_onset = torch.as_tensor(t_op >= START + 1.0)
    assert torch.equal(phi[0, after_onset], prior[0, after_onset])  # the depolarising step: the prior's spikes
    assert float(prior[1].abs().max()) == 0.0 and float((phi[1] - prior[1]).abs().max()) > 0.0  # the operator's
    assert float((phi[0, ~after_onset] - prior[0, ~after_onset]).abs().max()) > 0.0


def test_phase_stride_feeds_every_strided_sample_of_the_phase_channels() -> None:
    """fno.phase_stride s: the FNO's phase input channels are the stride-1 ones at polyphase offsets 0, s, 2s, ...
    (the same values, fewer channels), and a stride that does not divide time_fold is refused."""
    import pytest
    from pydantic import ValidationError

    import noble.operator.model as model_module

    seen: dict[int, torch.Tensor] = {}
    real = model_module.fno_with_constant_channels
    feats, _amps, stim = population(2, 3)
    f, s = torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(stim)
    for stride in (1, 2):
        cfg = config(PhaseNetConfig())
        cfg = cfg.model_copy(update={"fno": cfg.fno.model_copy(update={"phase_stride": stride}),
                                     "embedding": cfg.embedding.model_copy(update={"spike_clock": True})})
        torch.manual_seed(0)
        net = NobleOperator(cfg).eval()
        assert net.fno.in_channels == 4 + cfg.embedding.n_channels + 6 * 4 // stride  # sin, cos, 4 clock channels

        def spy(fno, before, constant, after, stride=stride):  # type: ignore[no-untyped-def]
            seen[stride] = after
            return real(fno, before, constant, after)

        model_module.fno_with_constant_channels = spy
        try:
            with torch.no_grad():
                net.operator(f, s)
        finally:
            model_module.fno_with_constant_channels = real
    k = 4
    full = seen[1].reshape(2, 6, k, -1)  # (B, P, polyphase offset r, T_op / k)
    strided = seen[2].reshape(2, 6, k // 2, -1)
    assert torch.equal(strided, full[:, :, ::2])
    with pytest.raises(ValidationError, match="phase_stride"):
        FNOConfig(time_fold=4, phase_stride=3)
