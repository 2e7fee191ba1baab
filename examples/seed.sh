#!/bin/sh
# Build the seed livepatch module (testdata/kmod/seed) with klp-ld, against the Debian 6.1
# headers, showing every decision klp-ld makes; then verify the result with `klp-ld check`.
# Installs what it needs when run as root on Debian (headers, pyelftools, capstone).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
export KLP_LD_PYTHON="$python"

if ! "$python" -c 'import elftools, capstone' 2>/dev/null; then
	"$python" -m pip install -q "pyelftools>=0.29,<0.34" "capstone>=5,<6"
fi
# The bench knows which Debian kernel to use and installs its headers if they are missing.
release=$(cd "$root" && "$python" - <<'PY'
from pathlib import Path
from tests.kernel.bench import Bench, BenchUnavailable
import tempfile
try:
    print(Bench.prepare("6.1", Path(tempfile.mkdtemp())).release)
except BenchUnavailable as exc:
    raise SystemExit(f"examples/seed.sh: {exc}")
PY
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/testdata/kmod/seed/." "$work/"
echo "== make -C /usr/src/linux-headers-$release M=$work LD=klp-ld KLP_LD_VERBOSE=1 modules"
make -s -C "/usr/src/linux-headers-$release" M="$work" LD="$root/wrappers/klp-ld" KLP_LD_VERBOSE=1 modules
echo "== the livepatch sections and symbols of klp_seed.ko"
readelf -W -S "$work/klp_seed.ko" | grep -F '.klp.'
readelf -W -s "$work/klp_seed.ko" | grep -F '.klp.sym.'
echo "== klp-ld check klp_seed.ko"
"$root/wrappers/klp-ld" check "$work/klp_seed.ko"
