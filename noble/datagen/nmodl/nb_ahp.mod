TITLE nb_ahp: spike-activated slow K+ current (slow AHP), in the structure of Wang (1998)

COMMENT
I_AHP = gbar z (v - erev), z' = (c - z) / 50, c' = alpha(v) (1 - c) - c / tau, alpha(v) = 0.2 / (1 + exp(-(v + 10)
/ 2)) /ms, as in noble/datagen/models/hh.py: the pool c rises only while the membrane is above ~-10 mV (during an
AP) and decays with tau; the conductance follows it with a 50 ms lag.
Wang (1998), J. Neurophysiol. 79:1549 (a Ca2+-activated K+ current whose [Ca2+]_i rises with each spike); here
without a Ca2+ current (stated simplification). K+ current with a per-segment reversal potential (E_K).
ENDCOMMENT

NEURON {
    SUFFIX nb_ahp
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, tau, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0 (S/cm2)
    erev = -90 (mV)
    tau = 1000 (ms)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    alpha (/ms)
}

STATE { z c }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * z * (v - erev)
}

INITIAL {
    rates(v)
    c = alpha / (alpha + 1 / tau)
    z = c
}

DERIVATIVE states {
    rates(v)
    c' = alpha * (1 - c) - c / tau
    z' = (c - z) / 50
}

UNITSOFF
PROCEDURE rates(v) {
    alpha = 0.2 / (1 + exp(-(v + 10) / 2))
}
UNITSON
