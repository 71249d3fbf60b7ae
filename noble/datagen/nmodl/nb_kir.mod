TITLE nb_kir: inward-rectifier K+ current (Kir2), instantaneous activation (Mahon et al. 2000)

COMMENT
I_Kir = gbar minf (v - erev), minf = 1 / (1 + exp((v - vhalf) / 10)), as in noble/datagen/models/hh.py.
Mahon, Deniau & Charpier (2000); ModelDB 150621 (Kirm.mod: Vsm -100 mV, ksm 10 mV). No kinetics, no
temperature factor. Nonspecific current with a per-segment reversal potential (E_K).
ENDCOMMENT

NEURON {
    SUFFIX nb_kir
    NONSPECIFIC_CURRENT i
    RANGE gbar, erev, vhalf, i
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 1.5e-4 (S/cm2)
    erev = -90 (mV)
    vhalf = -100 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
}

BREAKPOINT {
    i = gbar * minf(v) * (v - erev)
}

FUNCTION minf(v (mV)) {
    minf = 1 / (1 + exp((v - vhalf) / 10 (mV)))
}
