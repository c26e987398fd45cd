#!/usr/bin/env bash
# Contract test of `vrf serve` against docs/openapi.yaml with Schemathesis (pinned in
# versions.sh, installed into a venv under .onnxruntime/): starts a real server on a loopback
# port with a bearer token and a temporary store, then runs Schemathesis twice, with the token
# (every response must conform to the schema, schema-valid requests must be accepted and
# schema-invalid ones refused, never a 5xx) and without it (401 everywhere but /health); then
# the same with the token against a model fitted on external feature vectors (FEATURES_DIR, by
# default the one runtime/examples/features_fixture.rs writes), so both branches of the
# text-or-vector request schemas are served. Fails on any failure.
# Usage: scripts/fuzz-api.sh MODEL_DIR [FEATURES_DIR]
#   VRF_FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   VRF_FUZZ_TIMEOUT       seconds per Schemathesis run before it counts as a failure (default 300)
#   VRF_FUZZ_SEED          Schemathesis seed (default 1: the same cases each run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh
model="$1"
features_model="${2:-}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
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
# A copy of the binary just built: a shared target directory's may be rebuilt meanwhile.
cp "$target/debug/vrf" "$tmp/vrf"
pid=""
stop_server() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=""
}
cleanup() {
  stop_server
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "$features_model" ]; then
  features_model="$tmp/features-model"
  cargo run -q -p vrf-runtime --example features_fixture -- "$features_model" > /dev/null
fi
token="fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$token" > "$tmp/token"

# Starts `vrf serve` on MODEL_DIR with a fresh store; sets pid, url and the schema
# ($tmp/openapi.yaml) with the model's dimensions filled in.
start_server() {
  local dir="$1" addr=""
  # The previous server's log must not answer the wait below with its address.
  rm -f "$tmp/users.sqlite"* "$tmp/serve.log"
  "$tmp/vrf" serve --model "$dir" --bind 127.0.0.1:0 --store "$tmp/users.sqlite" \
    --token-file "$tmp/token" 2> "$tmp/serve.log" &
  pid=$!
  for _ in $(seq 1 300); do
    addr="$(grep -o 'listening on http://[0-9.:]*' "$tmp/serve.log" | sed 's|.*http://||' || true)"
    [ -n "$addr" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$addr" ]; then cat "$tmp/serve.log" >&2; echo "fuzz-api: vrf serve did not start" >&2; exit 1; fi
  url="http://$addr"
  # The schema with this model's latent dimension d (and, for a features model, its vector
  # dimension H) filled in: docs/openapi.yaml says "exactly d entries" and "exactly H numbers"
  # in prose, as they differ per model, so that generated posteriors and vectors are
  # schema-valid only when the server accepts them.
  curl -sf "$url/health" > "$tmp/health.json"
  input_kind="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("input", {}).get("kind", "text"))' "$tmp/health.json")"
  "$venv/bin/python" - docs/openapi.yaml "$tmp/health.json" > "$tmp/openapi.yaml" <<'PY'
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
health = json.load(open(sys.argv[2]))
schemas = doc["components"]["schemas"]
for key in ("mean", "var"):
    prop = schemas["InlinePosterior"]["properties"][key]
    prop["minItems"] = prop["maxItems"] = int(health["d"])
if health.get("input", {}).get("kind") == "features":
    schemas["FeatureVector"]["minItems"] = schemas["FeatureVector"]["maxItems"] = int(health["input"]["dim"])
yaml.safe_dump(doc, sys.stdout, sort_keys=False)
PY
  export VRF_FUZZ_INPUT_KIND="$input_kind"
}

# The server rules JSON Schema cannot state (docs/openapi.yaml says them in prose, and lists
# 422 among each POST operation's responses): the two responses of a reference or question
# must differ, a request must be of the served model's input kind (the request schemas are
# `oneOf` texts or vectors), and a features model's math must not overflow on the vectors
# (components of 1e16 can). Generated bodies hit these often ("" and "", a text request to a
# features model), so a 422 that names the rule, for a body that breaks it, is not counted as a
# rejected schema-valid request; every other failure counts.
cat > "$tmp/hooks.py" <<'PY'
import os

import schemathesis

PAIRS = {"references": ("chosen", "rejected"), "questions": ("a", "b")}


def has_identical_pair(body):
    if not isinstance(body, dict):
        return False
    for field, (x, y) in PAIRS.items():
        items = body.get(field)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get(x), (str, list)) and item.get(x) == item.get(y):
                    return True
    return False


def has_wrong_kind(body, kind):
    """Whether the body carries input of the other kind than the model's (`text`/`features`)."""
    if not isinstance(body, dict):
        return False
    if kind == "text":
        texty = lambda v: isinstance(v, str)
        if "features" in body:
            return True
    else:
        texty = lambda v: not isinstance(v, str)
        if "prompt" in body or "responses" in body:
            return True
    for field, keys in PAIRS.items():
        for item in body.get(field) or []:
            if isinstance(item, dict):
                if kind == "features" and "prompt" in item:
                    return True
                if kind == "text" and "prompt" not in item:
                    return True
                if any(k in item and not texty(item[k]) for k in keys):
                    return True
    return False


def has_huge_component(body, bound=1e6):
    """Whether a vector in the body has a component beyond `bound` (far beyond an embedding's
    scale), on which the model's math may overflow f32."""
    def vectors():
        if isinstance(body, dict):
            yield from body.get("features") or []
            for field, keys in PAIRS.items():
                for item in body.get(field) or []:
                    if isinstance(item, dict):
                        yield from (item.get(k) for k in keys)
    return any(
        isinstance(v, list) and any(isinstance(x, (int, float)) and abs(x) > bound for x in v)
        for v in vectors()
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or response.status_code != 422:
        return True
    try:
        message = response.json().get("error", "")
    except Exception:
        return True
    kind = os.environ.get("VRF_FUZZ_INPUT_KIND", "text")
    takes = "this model takes texts" if kind == "text" else "this model takes feature vectors"
    if has_wrong_kind(case.body, kind) and takes in message:
        return False
    # A features model's math overflowing on huge (schema-valid) components: documented 422.
    if kind == "features" and "non-finite value" in message and has_huge_component(case.body):
        return False
    same = "no preference)" in message and ("are the same text" in message or "are the same vector" in message)
    return not (has_identical_pair(case.body) and same)
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
start_server "$model"
fuzz "with token" token -H "Authorization: Bearer $token"
fuzz "without token" none
stop_server
start_server "$features_model"
fuzz "features model, with token" token -H "Authorization: Bearer $token"
if [ "$status" -eq 0 ]; then echo "fuzz-api: vrf serve conforms to docs/openapi.yaml"; fi
exit "$status"
