# shellcheck shell=bash disable=SC2034  # sets variables the sourcing scripts use
# Shared by the batch scripts in jobs/: argument parsing, the Perlmutter environment, the
# configuration query, the classify array mapping and the (dry-)run of one step with its log.
# Sourced, never executed. Each script sets USAGE (one line) before calling lhco_parse.
#
# Environment (all optional):
#   LHCO_VENV     virtual environment to activate   (default <repository>/.venv; empty: none)
#   LHCO_MODULES  modules to load                   (default "python cudatoolkit cudnn nccl";
#                 e.g. "tensorflow/2.15.0" for NERSC's TensorFlow with Horovod; empty: none)
#   DRY_RUN=1     same as --dry-run: print the commands instead of running them

LHCO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
LHCO_VENV=${LHCO_VENV-$LHCO_ROOT/.venv}
LHCO_MODULES=${LHCO_MODULES-python cudatoolkit cudnn nccl}

# The classifier modes of the array, in index order (see lhco_array_task).
CLASSIFY_MODES=(cwola idealized)

lhco_usage_error() {  # MESSAGE: one sentence and the usage line on stderr, exit 2
    printf 'error: %s\n%s\n' "$1" "$USAGE" >&2
    exit 2
}

# lhco_parse "VALUE_OPTIONS" "FLAG_OPTIONS" ARGS...
# Accepts CONFIG (positional or --config FILE), --dry-run, --set SECTION.KEY=VALUE (repeatable),
# -h/--help, and the script's own options: "--NAME VALUE" (or --NAME=VALUE) for each NAME in
# VALUE_OPTIONS, "--NAME" for each NAME in FLAG_OPTIONS. Sets CONFIG, SET_ARGS (--set pairs for
# the python command), OVERRIDES (the bare values), OPT[NAME] and DRY_RUN (0 or 1).
lhco_parse() {
    local value_options=" $1 " flag_options=" $2 " name
    shift 2
    CONFIG="" SET_ARGS=() OVERRIDES=()
    declare -gA OPT=()
    case ${DRY_RUN:-0} in 0 | "") DRY_RUN=0 ;; *) DRY_RUN=1 ;; esac
    while (($#)); do
        case $1 in
            -h | --help) echo "$USAGE"; exit 0 ;;
            --dry-run) DRY_RUN=1 ;;
            --set | --config)
                [[ $# -ge 2 && $2 != -* ]] || lhco_usage_error "$1 needs a value"
                if [[ $1 == --set ]]; then OVERRIDES+=("$2"); else lhco_set_config "$2"; fi
                shift ;;
            --set=*) OVERRIDES+=("${1#--set=}") ;;
            --config=*) lhco_set_config "${1#--config=}" ;;
            --?*)
                name=${1#--} name=${name%%=*}
                if [[ $flag_options == *" $name "* && $1 != *=* ]]; then
                    OPT[$name]=1
                elif [[ $value_options != *" $name "* ]]; then
                    lhco_usage_error "unknown option $1"
                elif [[ $1 == *=* ]]; then
                    OPT[$name]=${1#*=}
                else
                    [[ $# -ge 2 && $2 != --* ]] || lhco_usage_error "$1 needs a value"
                    OPT[$name]=$2
                    shift
                fi ;;
            *) lhco_set_config "$1" ;;
        esac
        shift
    done
    [[ -n $CONFIG ]] || lhco_usage_error "missing CONFIG (a YAML file such as configs/lhco_279.yaml)"
    [[ -f $CONFIG ]] || lhco_usage_error "config file $CONFIG does not exist"
    for name in "${OVERRIDES[@]}"; do SET_ARGS+=(--set "$name"); done
}

lhco_set_config() {
    [[ -z $CONFIG ]] || lhco_usage_error "one CONFIG expected, got $CONFIG and $1"
    CONFIG=$1
}

lhco_require_integer() {  # NAME VALUE: usage error unless VALUE is a non-negative integer
    [[ $2 =~ ^[0-9]+$ ]] || lhco_usage_error "$1 must be a non-negative integer, not '$2'"
}

lhco_dry() { [[ $DRY_RUN == 1 ]]; }

lhco_show() {  # COMMAND...: print a command as the dry run would run it
    printf '[dry-run]'
    printf ' %q' "$@"
    printf '\n'
}

# Python for configuration queries: the venv's (or the modules') python in a job; in a dry run,
# which loads nothing, the venv's interpreter if there is one.
lhco_python() {
    if lhco_dry && [[ -n $LHCO_VENV && -x $LHCO_VENV/bin/python ]]; then
        echo "$LHCO_VENV/bin/python"
    elif lhco_dry; then
        echo python3
    else
        echo python
    fi
}

# Modules, the project's venv and the run-time variables cray-mpich, TensorFlow and HDF5 read on
# Perlmutter. (HOROVOD_GPU_OPERATIONS=NCCL matters only when Horovod is built: make install-gpu.)
lhco_environment() {
    local exports=(
        MPICH_GPU_SUPPORT_ENABLED=0             # Horovod uses MPI for control only; without this,
                                                # cray-mpich aborts "GTL library is not linked"
        TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
        HDF5_USE_FILE_LOCKING=FALSE             # many readers of one HDF5 file on Lustre
        PYTHONUNBUFFERED=1                      # progress reaches the log as it happens
    )
    local modules
    read -ra modules <<<"$LHCO_MODULES"
    if lhco_dry; then
        ((${#modules[@]} == 0)) || lhco_show module load "${modules[@]}"
        [[ -z $LHCO_VENV ]] || lhco_show source "$LHCO_VENV/bin/activate"
        lhco_show export "${exports[@]}"
        return
    fi
    if ((${#modules[@]})); then
        type module >/dev/null 2>&1 ||
            { echo "error: no 'module' command; set LHCO_MODULES= to load nothing" >&2; exit 2; }
        module load "${modules[@]}" || { echo "error: module load $LHCO_MODULES failed" >&2; exit 2; }
    fi
    if [[ -n $LHCO_VENV ]]; then
        [[ -f $LHCO_VENV/bin/activate ]] || { echo "error: no virtual environment at $LHCO_VENV;" \
            "create it (README: On a GPU cluster) or set LHCO_VENV" >&2; exit 2; }
        # shellcheck disable=SC1091
        source "$LHCO_VENV/bin/activate"
    fi
    export "${exports[@]}"
}

# Reads paths.run_dir, sampling.n_events, classifier.nsig and classifier.seeds of CONFIG with
# the --set overrides into RUN_DIR, N_EVENTS, NSIG (array) and N_SEEDS. A bad config is one
# sentence and exit 2, as for the python entry points.
lhco_read_config() {
    local values
    # shellcheck disable=SC2016
    values=$("$(lhco_python)" -c '
import sys
from lhco_diffusion import config
from lhco_diffusion.errors import InputError
try:
    c = config.load(sys.argv[1], sys.argv[2:])
except InputError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
print(config.expand(c.paths.run_dir), c.sampling.n_events, c.classifier.seeds, *c.classifier.nsig, sep="\n")
' "$CONFIG" "${OVERRIDES[@]}") || exit 2
    mapfile -t values <<<"$values"
    RUN_DIR=${values[0]} N_EVENTS=${values[1]} N_SEEDS=${values[2]} NSIG=("${values[@]:3}")
}

# The classify array: index = (mode_index * n_nsig + nsig_index) * n_seeds + seed, with modes
# CLASSIFY_MODES and the injections classifier.nsig and seeds 0..classifier.seeds-1 of the
# config. Needs lhco_read_config. lhco_array_task INDEX sets TASK_MODE, TASK_NSIG, TASK_SEED.
lhco_array_size() { echo $((${#CLASSIFY_MODES[@]} * ${#NSIG[@]} * N_SEEDS)); }

lhco_array_task() {
    local index=$1 size
    size=$(lhco_array_size)
    ((index < size)) || lhco_usage_error "array index $index is outside the $size tasks of $CONFIG;\
 submit with --array=0-$((size - 1))"
    TASK_SEED=$((index % N_SEEDS))
    TASK_NSIG=${NSIG[index / N_SEEDS % ${#NSIG[@]}]}
    TASK_MODE=${CLASSIFY_MODES[index / (N_SEEDS * ${#NSIG[@]})]}
}

lhco_job_id() {
    if [[ -n ${SLURM_ARRAY_JOB_ID:-} && -n ${SLURM_ARRAY_TASK_ID:-} ]]; then
        echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else
        echo "${SLURM_JOB_ID:-local-$(date +%Y%m%d-%H%M%S)}"
    fi
}

# With '#SBATCH --requeue --signal=B:USR1@SECONDS': shortly before the time limit, put the job
# back in the queue; the step's --resume continues from where it was killed.
lhco_requeue_before_time_limit() {
    lhco_dry || trap 'LHCO_SIGNALLED=1; echo "time limit near: requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"' USR1
}

# lhco_run STEP COMMAND...: run COMMAND with its output also appended to
# <run_dir>/logs/STEP-<job id>.log (the Slurm -o file cannot be placed by the config); in a dry
# run print it. Returns the command's exit status.
lhco_run() {
    local log pid status
    log="$RUN_DIR/logs/$1-$(lhco_job_id).log"
    shift
    if lhco_dry; then
        printf '%s 2>&1 | tee -a %q\n' "$(lhco_show "$@")" "$log"
        return 0
    fi
    mkdir -p "$RUN_DIR/logs"
    printf '%s %s:%s\n' "$(date -Is)" "$(hostname)" "$(printf ' %q' "$@")" | tee -a "$log"
    (set -o pipefail; "$@" 2>&1 | tee -a "$log") &
    pid=$! LHCO_SIGNALLED=1
    while [[ $LHCO_SIGNALLED == 1 ]]; do  # a trapped signal (USR1) ends wait early: wait again
        LHCO_SIGNALLED=0 status=0
        wait "$pid" || status=$?
    done
    echo "$(date -Is) exit status $status (log: $log)"
    return "$status"
}
