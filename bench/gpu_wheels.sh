#!/usr/bin/env bash
# Wheels a lent GPU machine lacks (its image has jax/flax/optax/orbax/torch but not these), for
# Python 3.12 x86-64, into .whl/ (git-ignored through .git/info/exclude); .whl/fallback/ holds
# serjax's tested flax/optax/orbax, which bench/gpu_session.py installs only if the machine's
# own fail its smoke test. On the machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 bench/gpu_session.py --out $OUT ...
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$@"
}
get .whl ml_collections==1.1.0 soundfile==0.14.0 cffi==2.0.0 pycparser==3.0 librosa==0.11.0 \
  audioread==3.1.0 decorator==5.2.1 pooch==1.9.0 soxr==1.1.0 platformdirs==4.14.8 \
  tensorboardX==2.6.5
get .whl/fallback flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8
ls .whl .whl/fallback
