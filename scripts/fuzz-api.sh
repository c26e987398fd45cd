#!/usr/bin/env bash
# Contract test of `vrf serve` against docs/openapi.yaml with Schemathesis (pinned in
# versions.sh, installed into a venv under .onnxruntime/): starts a real server on a loopback
# port with a bearer token and a temporary store, then runs Schemathesis twice, with the token
# (every response must conform to the schema, schema-valid requests must be accepted and
# schema-invalid ones refused, never a 5xx) and without it (401 everywhere but /health). Fails
# on any failure. Usage: scripts/fuzz-api.sh MODEL_DIR
#   VRF_FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   VRF_FUZZ_TIMEOUT       seconds per Schemathesis run before it counts as a failure (default 300)
#   VRF_FUZZ_SEED          Schemathesis seed (default 1: the same cases each run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh
model="$1"
max_examples="${VRF_FUZZ_MAX_EXAMPLES:-40}"
run_timeout="${VRF_FUZZ_TIMEOUT:-300}"
seed="${VRF_FUZZ_SEED:-1}"

# Schemathesis, pinned, in its own venv (reused while the pin matches).
venv=.onnxruntime/fuzzenv
want="schemathesis==${SCHEMATHESIS_VERSION}"
if ! { [ -x "$venv/bin/schemathesis" ] && [ "$(cat "$venv/pins.txt" 2>/dev/null)" = "$want" ]; }; then
  echo "fuzz-api: creating $venv with $want" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "$want" >&2
  echo "$want" > "$venv/pins.txt"
fi

cargo build -q -p vrf-runtime --bin vrf
tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
token="fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$token" > "$tmp/token"
target/debug/vrf serve --model "$model" --bind 127.0.0.1:0 --store "$tmp/users.sqlite" \
  --token-file "$tmp/token" 2> "$tmp/serve.log" &
pid=$!
addr=""
for _ in $(seq 1 300); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$tmp/serve.log" | sed 's|.*http://||' || true)"
  [ -n "$addr" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$addr" ]; then cat "$tmp/serve.log" >&2; echo "fuzz-api: vrf serve did not start" >&2; exit 1; fi
url="http://$addr"

# The schema with this model's latent dimension d filled in (docs/openapi.yaml says "exactly d
# entries" in prose; d differs per model), so that generated posteriors are schema-valid only
# when the server accepts them.
d="$(curl -sf "$url/health" | python3 -c 'import json, sys; print(json.load(sys.stdin)["d"])')"
"$venv/bin/python" - docs/openapi.yaml "$d" > "$tmp/openapi.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
d = int(sys.argv[2])
for key in ("mean", "var"):
    prop = doc["components"]["schemas"]["InlinePosterior"]["properties"][key]
    prop["minItems"] = prop["maxItems"] = d
yaml.safe_dump(doc, sys.stdout, sort_keys=False)
PY

# The one server rule JSON Schema cannot state (docs/openapi.yaml says it in prose): the two
# responses of a reference or question must differ. Generated bodies hit it often ("" and ""),
# so a 422 that names this rule, for a body that has such a pair, is not counted as a rejected
# schema-valid request; every other failure counts.
cat > "$tmp/hooks.py" <<'PY'
import schemathesis

PAIRS = {"references": ("chosen", "rejected"), "questions": ("a", "b")}


def has_identical_pair(body):
    if not isinstance(body, dict):
        return False
    for field, (x, y) in PAIRS.items():
        items = body.get(field)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get(x), str) and item.get(x) == item.get(y):
                    return True
    return False


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or response.status_code != 422 or not has_identical_pair(case.body):
        return True
    try:
        message = response.json().get("error", "")
    except Exception:
        return True
    return "are the same text (no preference)" not in message
PY
export SCHEMATHESIS_HOOKS="$tmp/hooks.py"

# 413 counts as a refusal, and as an expected answer to a schema-valid request: the body limit
# (--max-body-bytes, in bytes) bounds memory and JSON Schema cannot state a body's size (64
# responses of 16384 characters are schema-valid and several MiB). The other statuses are
# Schemathesis's defaults.
cat > "$tmp/schemathesis.toml" <<'TOML'
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
TOML

# What the server answered so far, by its own counters: all requests, and those to routes
# other than /health that got a status other than 401. Each call is itself one more request
# (to /metrics, 200), counted by the next call.
served() {
  curl -sf -H "Authorization: Bearer $token" "$url/metrics" | awk '
    /^vrf_requests_total[{ ]/ {
      n += $NF
      if ($0 !~ /route="\/health"/ && $0 !~ /status="401"/) m += $NF
    }
    END {printf "%d %d", n, m}'
}

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance
status=0
fuzz() {
  local name="$1" auth="$2"; shift 2
  local before after started rc requests
  read -r -a before <<< "$(served)"
  started=$(date +%s)
  set +e
  # From $tmp: Schemathesis keeps a cache (.schemathesis/) in its working directory.
  (cd "$tmp" && exec timeout "$run_timeout" "$OLDPWD/$venv/bin/schemathesis" --no-color \
    --config-file "$tmp/schemathesis.toml" run \
    "$tmp/openapi.yaml" --url "$url" \
    --checks "$checks" --phases examples,coverage,fuzzing,stateful \
    --max-examples "$max_examples" --seed "$seed" --workers 1 --request-timeout 30 \
    --generation-database none --suppress-health-check too_slow,filter_too_much \
    "$@") > "$tmp/$name.log" 2>&1
  rc=$?
  set -e
  read -r -a after <<< "$(served)"
  requests=$((after[0] - before[0] - 1))
  echo "fuzz-api: $name: $requests requests in $(($(date +%s) - started)) s, schemathesis exit $rc;" \
    "$(grep -E '^ *[0-9]+ generated|^Filtered:' "$tmp/$name.log" | sed 's/^ *//' | paste -sd ';' - || true)"
  if [ "$rc" -ne 0 ]; then
    cat "$tmp/$name.log" >&2
    echo "fuzz-api: $name failed (exit $rc; 124: ran past ${run_timeout} s)" >&2
    status=1
  fi
  # Without the token, every answer but /health's must have been 401.
  if [ "$auth" = "none" ] && [ $((after[1] - before[1] - 1)) -ne 0 ]; then
    echo "fuzz-api: $name: $((after[1] - before[1] - 1)) requests without the token got past auth" >&2
    status=1
  fi
  if [ "$requests" -lt 100 ]; then
    echo "fuzz-api: $name: only $requests requests reached the server" >&2
    status=1
  fi
}
fuzz "with token" token -H "Authorization: Bearer $token"
fuzz "without token" none
if [ "$status" -eq 0 ]; then echo "fuzz-api: vrf serve conforms to docs/openapi.yaml"; fi
exit "$status"
