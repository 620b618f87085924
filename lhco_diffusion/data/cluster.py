"""Raw particles -> the two leading anti-kT jets and their constituents (processed events).

Each event's particles are clustered as massless four-vectors with anti-kT (fastjet's
vectorised multi-event interface: one C++ call per block of events). The two highest-pT jets
are kept if the leading one passes the pT cut; each jet keeps up to P constituents,
pT-ordered, in coordinates relative to the jet:

    pT_rel = pT / pT_jet,   deta = eta - eta_jet,   dphi = phi - phi_jet wrapped to [-pi, pi)

Jets are stored as fastjet's full-jet (pT, eta, phi, mass) plus the number of stored
constituents, min(N, P); mjj is the invariant mass of the two jets. Each jet's N-subjettiness
tau1..3 (``data.substructure``: its constituents reclustered with kT) comes from all of its
constituents.
"""
from __future__ import annotations

import fastjet
import numpy as np

from lhco_diffusion.data import fastjet_arrays
from lhco_diffusion.data.kinematics import four_vectors, pt_eta_phi_mass, wrap_phi
from lhco_diffusion.data.lhco import pad_by_pt
from lhco_diffusion.data.processed import Events
from lhco_diffusion.data.substructure import nsubjettiness

EVENTS_PER_CALL = 1000  # fastjet holds every event's clustering history until the call returns


def cluster_events(particles: np.ndarray, label: np.ndarray, npart: int, jet_radius: float = 1.0,
                   min_leading_jet_pt: float = 1200.0) -> Events:
    """Cluster raw events and keep those whose leading jet has pT > ``min_leading_jet_pt`` [GeV].

    particles: (n, 700, 3) [pT GeV, eta, phi], zero-padded; label: (n,).
    Returns ``Events`` with particles (m, 2, npart, 3), jets (m, 2, 5), mjj (m,) [GeV] and
    substructure (m, 2, 3) (tau1, tau2, tau3) for the m <= n events that have two jets and
    pass the cut, in input order.
    """
    if len(particles) > EVENTS_PER_CALL:
        blocks = range(0, len(particles), EVENTS_PER_CALL)
        return Events.concatenate([
            cluster_events(particles[start:start + EVENTS_PER_CALL], label[start:start + EVENTS_PER_CALL],
                           npart, jet_radius, min_leading_jet_pt)
            for start in blocks
        ])
    mask = particles[..., 0] > 0
    multiplicity = mask.sum(axis=1)
    pt, eta, phi = np.asarray(particles[mask], np.float64).T  # real particles, event after event
    jet_momenta, jet_event, sequence = _anti_kt(four_vectors(pt, eta, phi), multiplicity, jet_radius)

    leading = _two_leading(jet_event, jet_momenta, len(particles))
    has_two = np.all(leading >= 0, axis=1)
    kept_events = np.flatnonzero(has_two)
    kept_events = kept_events[np.hypot(*jet_momenta[leading[kept_events, 0], :2].T) > min_leading_jet_pt]
    selected = leading[kept_events].ravel()  # (2m,) flat jet indices, leading jet first
    jets = pt_eta_phi_mass(jet_momenta[selected])  # (2m, 4) pT, eta, phi, mass

    event_start = np.concatenate([[0], np.cumsum(multiplicity)])
    member_jet, member = _members(_constituents(sequence, jet_momenta, selected),
                                  event_start[np.repeat(kept_events, 2)])
    pt, eta, phi = pt[member], eta[member], phi[member]  # from here on: the selected jets' constituents
    relative = np.stack([
        pt / jets[member_jet, 0],
        eta - jets[member_jet, 1],
        wrap_phi(phi - jets[member_jet, 2]),
    ], axis=1)
    padded, n_constituents = pad_by_pt(member_jet, pt, relative, len(selected), npart)
    tau = nsubjettiness(pt, eta, phi, member_jet, len(selected))

    n_kept = len(kept_events)
    jets = np.concatenate([jets, np.minimum(n_constituents, npart)[:, None]], axis=1)
    dijets = jet_momenta[selected].reshape(n_kept, 2, 4).sum(axis=1)
    return Events(
        particles=padded.reshape(n_kept, 2, npart, 3),
        jets=jets.reshape(n_kept, 2, 5),
        mjj=pt_eta_phi_mass(dijets)[:, 3],
        label=np.asarray(label)[kept_events],
        substructure=tau.reshape(n_kept, 2, 3),
    )


def print_banner() -> None:
    """Print fastjet's citation banner now, once per process (not later, inside a progress bar)."""
    import fastjet._swig

    fastjet._swig.ClusterSequence.print_banner()


def _anti_kt(momenta: np.ndarray, multiplicity: np.ndarray, jet_radius: float):
    """Cluster every event at once.

    momenta: (M, 4) [px, py, pz, E] of all events' particles, ``multiplicity[i]`` of them per event.
    Returns ``(jet_momenta (J, 4), jet_event (J,), sequence)`` for the J jets of all events, in
    fastjet's order, and fastjet's clustering of them.
    """
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, jet_radius)
    sequence = fastjet_arrays.cluster(momenta, multiplicity, definition)
    jet_momenta, jets_per_event = fastjet_arrays.flat_momenta(sequence.inclusive_jets(0.0))
    jet_event = np.repeat(np.arange(len(multiplicity)), jets_per_event)
    return jet_momenta, jet_event, sequence


def _two_leading(jet_event: np.ndarray, jet_momenta: np.ndarray, n_events: int) -> np.ndarray:
    """(n_events, 2) flat indices of each event's two highest-pT jets (-1 where missing)."""
    jet_pt = np.hypot(jet_momenta[:, 0], jet_momenta[:, 1])
    order = np.lexsort((-jet_pt, jet_event))
    counts = np.bincount(jet_event, minlength=n_events)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    leading = np.full((n_events, 2), -1, dtype=np.int64)
    for rank in (0, 1):
        has = counts > rank
        leading[has, rank] = order[first[has] + rank]
    return leading


def _constituents(sequence: fastjet.ClusterSequence, jet_momenta: np.ndarray,
                  selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(within-event particle indices, sizes, listed)``: fastjet's constituent lists of the jets
    above a pT threshold, jet after jet, ``sizes[k]`` particles for the k-th listed jet, and each
    selected jet's place ``listed`` in that list.

    The lists follow ``inclusive_jets``' order, and listing the many soft jets nobody selected costs
    as much as listing the selected ones: the threshold is half the softest selected jet's pT. The
    listed jets are predicted from pT^2 = px^2 + py^2, as fastjet computes it; should a jet within
    rounding of the threshold spoil the prediction, every jet is listed instead.
    """
    pt_squared = jet_momenta[:, 0] ** 2 + jet_momenta[:, 1] ** 2
    softest = np.sqrt(pt_squared[selected].min()) if len(selected) else 0.0
    for min_pt in (0.5 * softest, 0.0):
        listed = np.flatnonzero(pt_squared >= min_pt * min_pt)
        within_event, sizes = fastjet_arrays.flat_lists(sequence.constituent_index(min_pt))
        if len(sizes) == len(listed):
            break
    return within_event, sizes, np.searchsorted(listed, selected)


def _members(constituents: tuple[np.ndarray, np.ndarray, np.ndarray],
             selected_event_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(slot in selected, flat particle index)`` of every constituent of the selected jets.

    constituents: ``_constituents(...)`` of the selected jets; selected_event_start: flat index of
    the first particle of each selected jet's event.
    """
    within_event, sizes, selected = constituents
    jet_start = np.concatenate([[0], np.cumsum(sizes)])
    lengths = sizes[selected]
    member_jet = np.repeat(np.arange(len(selected)), lengths)
    within_jet = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = jet_start[selected][member_jet] + within_jet
    return member_jet, within_event[position] + selected_event_start[member_jet]
