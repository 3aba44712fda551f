#!/usr/bin/env bash
# One prepared GPU run: the CUDA tests and the GPU rows of the benchmarks, logs under $OUT.
#   bash benchmarks/device_check.sh
# On a machine without soundfile/pytest/jsonargparse, put their wheels in .whl/ first (they
# are installed to /tmp/site). Without librosa the features benchmark needs --reference-ms
# (pass REFERENCE_MS=115.7, the librosa ms per clip measured on the CPU machine).
# PYTHON selects the interpreter (default python3).
set -uo pipefail
py="${PYTHON:-python3}"
out="${OUT:-results/device}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
reference=()
[ -n "${REFERENCE_MS:-}" ] && reference=(--reference-ms "$REFERENCE_MS")
status=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/machine.txt"
"$py" -m pytest -q -p no:cacheprovider -m gpu tests/unit/test_features_shapes.py \
  tests/unit/test_models.py 2>&1 | tee "$out/gpu_tests.log" || status=1
"$py" benchmarks/features.py --num-workers "$(nproc)" "${reference[@]}" 2>&1 \
  | tee "$out/features.log" || status=1
"$py" benchmarks/training.py --device all --batch-size 256 2>&1 \
  | tee "$out/training.log" || status=1
exit $status
