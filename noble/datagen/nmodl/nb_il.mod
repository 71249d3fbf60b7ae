TITLE nb_il: high-threshold L-type Ca2+ current of Pospischil et al. (2008) (Reuveni et al. 1993 kinetics)

COMMENT
I_L = gbar q^2 r (v - erev) with a fixed reversal erev (no Ca2+ pool), as in noble/datagen/models/hh.py.
ENDCOMMENT

NEURON {
    SUFFIX nb_il
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 2e-4 (S/cm2)
    erev = 120 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    aq (/ms)
    bq (/ms)
    ar (/ms)
    br (/ms)
}

STATE { q r }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * q * q * r * (v - erev)
}

INITIAL {
    rates(v)
    q = aq / (aq + bq)
    r = ar / (ar + br)
}

DERIVATIVE states {
    rates(v)
    q' = aq * (1 - q) - bq * q
    r' = ar * (1 - r) - br * r
}

UNITSOFF
PROCEDURE rates(v) {
    aq = 0.055 * vtrap(-27 - v, 3.8)
    bq = 0.94 * exp((-75 - v) / 17)
    ar = 0.000457 * exp((-13 - v) / 50)
    br = 0.0065 / (exp((-15 - v) / 28) + 1)
}

FUNCTION vtrap(x, y) {
    if (fabs(x / y) < 1e-6) {
        vtrap = y * (1 - x / y / 2)
    } else {
        vtrap = x / (exp(x / y) - 1)
    }
}
UNITSON
