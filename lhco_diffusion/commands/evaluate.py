"""Evaluate classifier scores: ROC, AUC and SIC with seed bands, and generated-vs-reference plots.

    python -m lhco_diffusion.evaluate --config FILE --scores RUN/scores --output RUN/evaluation \
        [--generated SR_SAMPLES.h5 [FM_SR_SAMPLES.h5] --reference SR_DATA.h5]
    python -m lhco_diffusion.evaluate --config FILE --generated G.h5 --reference R.h5 --output DIR

``--scores`` holds one directory per mode (as ``classify`` writes them) or score files itself.
Writes sic_<mode>, roc_<mode>, max_sic_vs_nsig, auc_vs_nsig (and generated_vs_reference) in
every ``evaluation.formats``, plus summary.json and summary.md (``workflow.evaluation``). With
``--generated``/``--reference`` it also writes fidelity.json and fidelity.md (W1 per feature
beside its noise floor, FPD, KPD, and the two-sample AUC of any two-sample scores).
``--generated`` takes one sample per generator (diffusion red, flow matching blue, as in the
paper's Figs. 4 and 5); the generator of a file is the one its attrs record. Every input is read
and checked before the first file is written; an existing evaluation (its summary.json) is
replaced only with ``--overwrite``.
"""
from __future__ import annotations

from pathlib import Path

from lhco_diffusion import cli
from lhco_diffusion.workflow import evaluation


def main(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], overwrite=True)
    parser.add_argument("--scores", type=Path, help="directory of score files (per mode)")
    parser.add_argument("--output", type=Path, required=True, help="directory for plots and summaries")
    parser.add_argument("--generated", type=Path, nargs="+",
                        help="generated events (one file per generator) to compare with --reference")
    parser.add_argument("--reference", type=Path, help="reference events (simulation) for --generated")
    args = parser.parse_args(argv)
    return cli.run(lambda: _evaluate(args))


def _evaluate(args) -> None:
    summary = evaluation.evaluate(cli.load_config(args), args.scores, args.output, args.generated, args.reference,
                                  args.overwrite)
    print(evaluation.markdown(summary))
    print(f"wrote plots and summaries to {args.output}")
