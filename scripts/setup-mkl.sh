#!/usr/bin/env bash
# Intel MKL for the trainer's optional `mkl` feature, from PyPI only: the static LP64 libraries
# (mkl-static) and Intel OpenMP's static runtime (intel-openmp), laid out as
# $VRF_CACHE/mkl-$MKL_VERSION/lib. Linked statically, so the binaries need nothing at run time
# (candle declares the MKL functions it calls: no headers). Idempotent; prints the absolute
# directory the workspace's stand-in intel-mkl-src (third_party/) links from, as MKLROOT:
#
#   export MKLROOT=$(bash scripts/setup-mkl.sh)
#   cargo build --release -p vrf-trainer --features mkl
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh
CACHE="${VRF_CACHE:-$HOME/.cache/vrf}"
mkdir -p "$CACHE"
# Absolute: cargo runs the stand-in's build script from its own directory.
CACHE="$(cd "$CACHE" && pwd)"
DEST="$CACHE/mkl-$MKL_VERSION"
if [ ! -f "$DEST/.complete" ]; then
  tmp=$(mktemp -d "$CACHE/.mkl-tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "== downloading Intel MKL $MKL_VERSION from PyPI (~300 MB, once)" >&2
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp/wheels" \
    "mkl-static==$MKL_VERSION" "intel-openmp==$MKL_VERSION" >&2
  # Only the files the LP64 + Intel OpenMP static link needs (the wheels unpack to 1.1 GB).
  python3 - "$tmp/wheels" "$tmp/root" <<'PY'
import pathlib, shutil, sys, zipfile
wheels, root = map(pathlib.Path, sys.argv[1:])
want = {"libmkl_intel_lp64.a", "libmkl_intel_thread.a", "libmkl_core.a", "libiomp5.a"}
(root / "lib").mkdir(parents=True)
found = set()
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            name = member.rsplit("/", 1)[-1]
            if name in want - found:
                with z.open(member) as src, open(root / "lib" / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found.add(name)
if want - found:
    sys.exit(f"setup-mkl: the wheels in {wheels} lack {sorted(want - found)}")
PY
  touch "$tmp/root/.complete"
  rm -rf "$DEST"
  mv "$tmp/root" "$DEST"
fi
echo "$DEST"
