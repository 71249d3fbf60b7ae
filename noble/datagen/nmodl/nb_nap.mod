TITLE nb_nap: persistent Na+ current, instantaneous activation (Magistretti & Alonso 1999)

COMMENT
I_NaP = gbar minf (v - erev), minf = 1 / (1 + exp(-(v - vhalf) / 6.8)), as in noble/datagen/models/hh.py.
Magistretti & Alonso (1999), J. Gen. Physiol. 114:491 (entorhinal layer-II neurons: V_1/2 -52.3 mV, slope
6.8 mV). No kinetics (activation within ~1 ms), no slow inactivation, no temperature factor. Nonspecific
current with a per-segment reversal potential (E_Na).
ENDCOMMENT

NEURON {
    SUFFIX nb_nap
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, vhalf, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 1e-4 (S/cm2)
    erev = 50 (mV)
    vhalf = -52.3 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
}

BREAKPOINT {
    i = gbar * minf(v) * (v - erev)
}

FUNCTION minf(v (mV)) {
    minf = 1 / (1 + exp(-(v - vhalf) / 6.8 (mV)))
}
