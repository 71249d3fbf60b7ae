TITLE nb_im: slow non-inactivating K+ current (M-type) of Pospischil et al. (2008)

COMMENT
I_M = gbar p (v - erev); p_inf = 1/(1+exp(-(v+35)/10)),
tau_p = taumax / (3.3 exp((v+35)/20) + exp(-(v+35)/20)), as in noble/datagen/models/hh.py.
ENDCOMMENT

NEURON {
    SUFFIX nb_im
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, taumax, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 7.87e-5 (S/cm2)
    erev = -90 (mV)
    taumax = 502 (ms)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    pinf
    taup (ms)
}

STATE { p }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * p * (v - erev)
}

INITIAL {
    rates(v)
    p = pinf
}

DERIVATIVE states {
    rates(v)
    p' = (pinf - p) / taup
}

UNITSOFF
PROCEDURE rates(v) {
    pinf = 1 / (1 + exp(-(v + 35) / 10))
    taup = taumax / (3.3 * exp((v + 35) / 20) + exp(-(v + 35) / 20))
}
UNITSON
