TITLE nb_na: fast Na+ current of Pospischil et al. (2008), Traub-Miles kinetics shifted by vt

COMMENT
I_Na = gbar m^3 h s (v - erev), as in noble/datagen/models/hh.py. Rates in 1/ms with vu = v - vt (mV).
The rates are multiplied by tadj (noble's phi_NaK). Nonspecific current so that E_Na is a plain per-cell parameter.
s: slow inactivation (Fleidervish et al. 1996, rates as ModelDB 143671 naps.mod), fs = noble's f_NaS (share of
channels that can enter it; 0: s = 1), phis = phi_NaS (factor on its rates), vs = V_NaS (its rates read at v - vs).
ENDCOMMENT

NEURON {
    SUFFIX nb_na
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, vt, tadj, fs, phis, vs, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0.058 (S/cm2)
    erev = 50 (mV)
    vt = -57.9 (mV)
    tadj = 1 : temperature factor of the rates, hh2.mod's 3^((celsius - 36) / 10)
    fs = 0 : share of channels that can enter slow inactivation
    phis = 1 : factor on the slow inactivation's rates
    vs = 0 (mV) : shift of the slow inactivation's rates (read at v - vs)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    am (/ms)
    bm (/ms)
    ah (/ms)
    bh (/ms)
    asl (/ms)
    bsl (/ms)
}

STATE { m h s }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * m * m * m * h * s * (v - erev)
}

INITIAL {
    rates(v)
    m = am / (am + bm)
    h = ah / (ah + bh)
    s = 1 - fs * bsl / (asl + bsl)
}

DERIVATIVE states {
    rates(v)
    m' = tadj * (am * (1 - m) - bm * m)
    h' = tadj * (ah * (1 - h) - bh * h)
    s' = phis * (asl * (1 - s) - bsl * (s - 1 + fs))
}

UNITSOFF
PROCEDURE rates(v) {
    LOCAL vu
    vu = v - vt
    am = 0.32 * vtrap(13 - vu, 4)
    bm = 0.28 * vtrap(vu - 40, 5)
    ah = 0.128 * exp((17 - vu) / 18)
    bh = 4 / (1 + exp((40 - vu) / 5))
    if (v - vs < -150) {
        asl = 0.001 * exp((-85 + 150) / 30)
    } else {
        asl = 0.001 * exp((-85 - (v - vs)) / 30)
    }
    bsl = 0.0034 / (exp((-17 - (v - vs)) / 10) + 1)
}

FUNCTION vtrap(x, y) {
    : x / (exp(x / y) - 1), continuous through x = 0
    if (fabs(x / y) < 1e-6) {
        vtrap = y * (1 - x / y / 2)
    } else {
        vtrap = x / (exp(x / y) - 1)
    }
}
UNITSON
