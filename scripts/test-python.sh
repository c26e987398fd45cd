#!/usr/bin/env bash
# The Python package (python/): builds the abi3 wheel with maturin (dev profile, in the shared
# target/), installs it into a fresh venv (numpy and onnxruntime come from PyPI as its
# dependencies), and runs pytest against an exported model (default: the parity model that
# scripts/test.sh's cargo tests leave), the `vrf` CLI, and a model fitted on external feature
# vectors that runtime/examples/features_fixture.rs writes with the runtime's numbers beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo's target directory (CARGO_TARGET_DIR when set, as in a worktree sharing one).
target="${CARGO_TARGET_DIR:-$PWD/target}"
model="$(cd "${1:-$target/parity-model}" && pwd)"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# Build tools, kept between runs (idempotent).
tools=.onnxruntime/pytools
if [ ! -x "$tools/bin/maturin" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --upgrade pip
  "$tools/bin/pip" install -q "maturin>=1.9,<2"
fi
if [ ! -x "$tools/bin/openapi-spec-validator" ]; then
  "$tools/bin/pip" install -q "openapi-spec-validator>=0.7,<1" pyyaml
fi

# docs/openapi.yaml is a valid OpenAPI document and lists exactly the routes vrf serve has.
"$tools/bin/python" - <<'PY'
import re, yaml
from openapi_spec_validator import validate
spec = yaml.safe_load(open("docs/openapi.yaml"))
validate(spec)
routes = {}
for path, methods in re.findall(r'\.route\("([^"]+)",\s*([^)]*\)(?:\.\w+\(\w+\))*)', open("runtime/src/serve/routes.rs").read()):
    routes[path] = set(re.findall(r'(get|post|delete|put|patch)\(', methods))
documented = {p: {m for m in ops if m in ("get", "post", "delete", "put", "patch")} for p, ops in spec["paths"].items()}
assert routes == documented, f"router {routes} vs openapi {documented}"
print(f"openapi: valid, {len(routes)} routes match the router")
PY
# The wheel goes to target/wheels (ignored by git), as docs/python.md's build command puts it.
rm -rf target/wheels
"$tools/bin/maturin" build -q -m python/Cargo.toml -o target/wheels --interpreter python3
wheels=(target/wheels/vrf-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then echo "test-python: expected one wheel, got ${wheels[*]}" >&2; exit 1; fi
# Its extension is stripped (python/pyproject.toml's `strip = true`): no symbol table, no debug
# info, though the cargo profiles keep line tables.
so=target/wheels/_vrf-extension.so
python3 - "${wheels[0]}" "$so" <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
name = next(n for n in wheel.namelist() if n.startswith("vrf/_vrf") and n.endswith(".so"))
open(sys.argv[2], "wb").write(wheel.read(name))
PY
sections="$(readelf -S -W "$so")"
rm -f "$so"
if grep -Eq ' \.(symtab|debug_info) ' <<<"$sections"; then
  echo "test-python: the wheel's extension is not stripped" >&2; exit 1
fi
# A clean venv each time: the wheel must install with nothing but its declared dependencies.
venv=target/py-clean-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "${wheels[0]}" pytest
cargo build -q -p vrf-runtime --bin vrf
features_model="$target/py-features-model"
rm -rf "$features_model"
cargo run -q -p vrf-runtime --example features_fixture -- "$features_model"
# Run from outside the source tree so `import vrf` is the installed wheel.
# Without ORT_DYLIB_PATH: the package must find the onnxruntime wheel's own library.
tests="$PWD/python/tests"
(cd target && env -u ORT_DYLIB_PATH VRF_TEST_MODEL="$model" VRF_CLI="$target/debug/vrf" \
  VRF_TEST_FEATURES_MODEL="$features_model" \
  "$PWD/py-clean-venv/bin/python" -m pytest -q -p no:cacheprovider "$tests")
echo "test-python: wheel ${wheels[0]##*/} ($(du -k "${wheels[0]}" | cut -f1) KiB, stripped) installed in a clean venv; pytest passed"
