TITLE nb_id: slowly inactivating d-type K+ current of Golomb et al. (2007)

COMMENT
I_D = gbar a^3 b (v - erev); a_inf = 1/(1+exp(-(v+50)/20)), tau_a = 2 ms,
b_inf = 1/(1+exp((v+70)/6)), tau_b = taub, as in noble/datagen/models/hh.py.
ENDCOMMENT

NEURON {
    SUFFIX nb_id
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, taub, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0 (S/cm2)
    erev = -90 (mV)
    taub = 150 (ms)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    ainf
    binf
}

STATE { a b }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * a * a * a * b * (v - erev)
}

INITIAL {
    rates(v)
    a = ainf
    b = binf
}

DERIVATIVE states {
    rates(v)
    a' = (ainf - a) / 2
    b' = (binf - b) / taub
}

UNITSOFF
PROCEDURE rates(v) {
    ainf = 1 / (1 + exp(-(v + 50) / 20))
    binf = 1 / (1 + exp((v + 70) / 6))
}
UNITSON
