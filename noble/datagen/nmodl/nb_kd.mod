TITLE nb_kd: delayed-rectifier K+ current of Pospischil et al. (2008), Traub-Miles kinetics shifted by vt

COMMENT
I_Kd = gbar n^4 (v - erev), as in noble/datagen/models/hh.py. Rates in 1/ms with vu = v - vt (mV).
ENDCOMMENT

NEURON {
    SUFFIX nb_kd
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, vt, tadj, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0.0039 (S/cm2)
    erev = -90 (mV)
    vt = -57.9 (mV)
    tadj = 1 : temperature factor of the rates, hh2.mod's 3^((celsius - 36) / 10)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    an (/ms)
    bn (/ms)
}

STATE { n }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * n * n * n * n * (v - erev)
}

INITIAL {
    rates(v)
    n = an / (an + bn)
}

DERIVATIVE states {
    rates(v)
    n' = tadj * (an * (1 - n) - bn * n)
}

UNITSOFF
PROCEDURE rates(v) {
    LOCAL vu
    vu = v - vt
    an = 0.032 * vtrap(15 - vu, 5)
    bn = 0.5 * exp((10 - vu) / 40)
}

FUNCTION vtrap(x, y) {
    if (fabs(x / y) < 1e-6) {
        vtrap = y * (1 - x / y / 2)
    } else {
        vtrap = x / (exp(x / y) - 1)
    }
}
UNITSON
