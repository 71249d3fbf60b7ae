TITLE nb_it: low-threshold T-type Ca2+ current of Pospischil et al. (2008) (Destexhe et al. 1996 kinetics)

COMMENT
I_T = gbar s_inf^2 u (v - erev) with a fixed reversal erev (no Ca2+ pool), voltage shift vx:
s_inf = 1/(1+exp(-(v+vx+57)/6.2)), u_inf = 1/(1+exp((v+vx+81)/4)),
tau_u = (30.8 + (211.4 + exp((v+vx+113.2)/5)) / (1+exp((v+vx+84)/3.2))) / 3.7 ms,
as in noble/datagen/models/hh.py.
ENDCOMMENT

NEURON {
    SUFFIX nb_it
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, vx, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 4e-4 (S/cm2)
    erev = 120 (mV)
    vx = 2 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    sinf
    uinf
    tauu (ms)
}

STATE { u }

BREAKPOINT {
    SOLVE states METHOD cnexp
    sinf = 1 / (1 + exp(-(v + vx + 57) / 6.2))
    i = gbar * sinf * sinf * u * (v - erev)
}

INITIAL {
    rates(v)
    u = uinf
}

DERIVATIVE states {
    rates(v)
    u' = (uinf - u) / tauu
}

UNITSOFF
PROCEDURE rates(v) {
    LOCAL vx_
    vx_ = v + vx
    uinf = 1 / (1 + exp((vx_ + 81) / 4))
    tauu = (30.8 + (211.4 + exp((vx_ + 113.2) / 5)) / (1 + exp((vx_ + 84) / 3.2))) / 3.7
}
UNITSON
