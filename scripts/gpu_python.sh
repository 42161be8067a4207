# Sourced by the GPU scripts (gpu_check.sh, gpu_study.sh, gpu_session.sh), from the
# repository root: PYTHON is .venv's python when there is one, else python3
# (PYTHON=... overrides); the repository is importable; require_cuda NAME HINT
# exits 3 with a plain message when that Python sees no CUDA device.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
export PYTHON PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

require_cuda() {  # require_cuda NAME HINT
    if ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        build="$("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA build" if torch.version.cuda else "CPU-only build")' 2>/dev/null || echo "no torch")"
        echo "$1: no CUDA device is visible to $PYTHON (torch: $build); nothing was run. $2" >&2
        exit 3
    fi
}
