"""Raw LHCO events -> the processed HDF5 file the models train on (fastjet anti-kT clustering).

    python -m lhco_diffusion.prepare --input events_anomalydetection_v2.h5 --output data/ [--npart 279]
    python -m lhco_diffusion.prepare --synthetic 20000 --output data/ [--signal-fraction 0.1] [--seed 1]
    python -m lhco_diffusion.prepare --pythia --n-background N --n-signal M --output raw.h5

Unset options take their values from ``--config`` (data section), or from the defaults, and are
checked like any ``--set``. The prepared file is DIR/<raw name>_P<npart>.h5; a summary of read,
kept and per-region counts is printed at the end. An existing output (raw or prepared) is
replaced only with ``--overwrite``.
"""
from __future__ import annotations

from pathlib import Path

from lhco_diffusion import cli, files
from lhco_diffusion import config as config_module
from lhco_diffusion.data import sources, synthetic
from lhco_diffusion.errors import InputError


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], config_required=False, overwrite=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="raw LHCO R&D file (pandas HDF, key 'df')")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N toy raw events first")
    source.add_argument("--pythia", action="store_true", help="generate a raw file with Pythia 8 only")
    parser.add_argument("--output", type=Path, required=True,
                        help="output directory (the raw file for --pythia)")
    parser.add_argument("--npart", type=int, help="constituents kept per jet (P)")
    parser.add_argument("--chunk-size", type=int, help="raw events read per chunk")
    parser.add_argument("--workers", type=int, help="clustering (or Pythia) processes")
    parser.add_argument("--signal-fraction", type=float, help="--synthetic: share of signal events")
    parser.add_argument("--n-background", type=int, help="--pythia: QCD dijet events")
    parser.add_argument("--n-signal", type=int, help="--pythia: W' -> XY events")
    parser.add_argument("--seed", type=int, help="--synthetic/--pythia: random seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return cli.run(lambda: _prepare(args))


def _prepare(args) -> None:
    options = {"seed": args.seed, "workers": args.workers, "chunk_size": args.chunk_size, "npart": args.npart,
               "synthetic_events": args.synthetic, "synthetic_signal_fraction": args.signal_fraction}
    args.overrides += [f"data.{key}={value}" for key, value in options.items() if value is not None]
    if args.config:
        data = cli.load_config(args).data
    else:
        data = config_module.from_dict({}, "<defaults>", args.overrides).data
    if args.pythia:
        if args.n_background is None or args.n_signal is None:
            raise InputError("--pythia needs --n-background and --n-signal")
        files.refuse_existing(args.output, args.overwrite)
        from lhco_diffusion.data import pythia

        pythia.generate(args.output, args.n_background, args.n_signal, data.seed, data.workers)
        print(f"wrote {args.output}")
        return
    raw = args.input
    if args.synthetic is not None:
        raw = args.output / sources.synthetic_name(data.synthetic_events, data.synthetic_signal_fraction, data.seed)
    output = args.output / sources.processed_name(raw, data.npart)
    for path in (raw, output) if args.synthetic is not None else (output,):
        files.refuse_existing(path, args.overwrite)
    if args.synthetic is not None:
        synthetic.generate_raw(raw, data.synthetic_events, data.synthetic_signal_fraction, data.seed,
                               data.chunk_size, progress=not args.quiet)
        print(f"wrote {raw}")
    summary = sources.prepare_file(
        raw, output, data.npart, data.jet_radius, data.min_leading_jet_pt, data.chunk_size, data.workers,
        progress=not args.quiet, data_config=data,
    )
    kept = summary["n_kept"] / summary["n_read"]
    print(f"read {summary['n_read']} events, kept {summary['n_kept']} ({kept:.1%}) with two jets and a "
          f"leading jet above {data.min_leading_jet_pt:g} GeV: signal region {summary['SR']}, "
          f"sideband {summary['SB']}, other {summary['other']}")
    print(f"wrote {summary['output']}")


def _given(value, default):
    return default if value is None else value
