TITLE nb_ih: hyperpolarisation-activated cation current (Kole et al. 2006, as in Hay et al. 2011)

COMMENT
I_h = gbar w (v - erev), as in noble/datagen/models/hh_mc.py. Rates in 1/ms:
alpha_w = 0.00643 (v+154.9) / (exp((v+154.9)/11.9) - 1), beta_w = 0.193 exp(v/33.1).
Kole, Hallermann & Stuart (2006) J. Neurosci. 26:1677; Hay et al. (2011) ModelDB 139653 (Ih.mod).
No temperature factor. Nonspecific current with a per-segment reversal potential.
ENDCOMMENT

NEURON {
    SUFFIX nb_ih
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 2e-5 (S/cm2)
    erev = -45 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    aw (/ms)
    bw (/ms)
}

STATE { w }

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * w * (v - erev)
}

INITIAL {
    rates(v)
    w = aw / (aw + bw)
}

DERIVATIVE states {
    rates(v)
    w' = aw * (1 - w) - bw * w
}

UNITSOFF
PROCEDURE rates(v) {
    aw = 0.00643 * vtrap(v + 154.9, 11.9)
    bw = 0.193 * exp(v / 33.1)
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
