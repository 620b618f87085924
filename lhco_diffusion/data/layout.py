"""The event layout, declared once: which features a jet and a particle carry, and in what order.

    particles  (N, 2, P, 3)   PARTICLE_FEATURES per constituent slot, P = data.npart
    jets       (N, 2, 5)      JET_FEATURES per jet; N_INDEX is the constituent count
    mjj        (N,)           the conditioning variable [GeV]

Processed files, the transforms, the networks, generation and the plots all derive their
shapes and feature positions from these names.
"""
from __future__ import annotations

JET_FEATURES = ("pt", "eta", "phi", "mass", "n_constituents")  # GeV, -, rad, GeV, count
PARTICLE_FEATURES = ("pt_rel", "deta", "dphi")  # pT/pT_jet, eta - eta_jet, wrapped phi - phi_jet
N_JET_FEATURES = len(JET_FEATURES)
N_PARTICLE_FEATURES = len(PARTICLE_FEATURES)
N_INDEX = JET_FEATURES.index("n_constituents")
JETS_PER_EVENT = 2
