#!/usr/bin/env bash
# Runs the `vrf` CLI on an exported model directory (with its data.jsonl, as the parity test
# leaves it): features, user (unseen, from reference triplets, and seen), score and rank.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cargo build -q -p vrf-runtime --bin vrf
vrf=target/debug/vrf
python3 - "$model/data.jsonl" "$tmp" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
seen = {r["user"] for r in rows if r["split"] == "target"}
user = next(r["user"] for r in rows if r["user"] not in seen)
refs = [r for r in rows if r["user"] == user and r["split"] == "ref"]
with open(f"{sys.argv[2]}/refs.jsonl", "w") as f:
    for r in refs:
        f.write(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}) + "\n")
with open(f"{sys.argv[2]}/cands.jsonl", "w") as f:
    r = refs[0]
    f.write(json.dumps({"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"], "Ok."]}) + "\n")
with open(f"{sys.argv[2]}/texts.jsonl", "w") as f:
    f.write(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n")
with open(f"{sys.argv[2]}/seen_id", "w") as f:
    f.write(sorted(seen)[0])
PY
$vrf features --model "$model" --input "$tmp/texts.jsonl" > "$tmp/features.json"
$vrf user --model "$model" --refs "$tmp/refs.jsonl" > "$tmp/user.json"
$vrf user --model "$model" --seen "$(cat "$tmp/seen_id")" > "$tmp/seen.json"
$vrf score --model "$model" --user "$tmp/user.json" --input "$tmp/cands.jsonl" > "$tmp/scores.json"
$vrf rank --model "$model" --seen "$(cat "$tmp/seen_id")" --input "$tmp/cands.jsonl" > "$tmp/rank.json"
if $vrf user --model "$model" --refs /dev/null 2> "$tmp/err"; then
  echo "cli-smoke: an empty reference set must fail" >&2; exit 1
fi
grep -q "no reference triplets" "$tmp/err"
# A missing model directory names the file and prints the OS error once.
if $vrf user --model "$tmp/no-such-model" --seen x 2> "$tmp/err"; then
  echo "cli-smoke: a missing model directory must fail" >&2; exit 1
fi
grep -q "vrf.json" "$tmp/err"
test "$(grep -o "os error 2" "$tmp/err" | wc -l)" -eq 1
python3 - "$tmp" "$model/vrf.json" <<'PY'
import json, sys
t = sys.argv[1]
m = json.load(open(sys.argv[2]))
f = json.loads(open(f"{t}/features.json").read())
assert len(f["hidden"]) == m["hidden"] and len(f["rewards"]) == m["k"], f.keys()
for name in ("user", "seen"):
    u = json.load(open(f"{t}/{name}.json"))
    assert len(u["mean"]) == m["d"] and len(u["weights"]) == m["k"], u
    assert abs(sum(u["weights"]) - 1) < 1e-5 and u["uncertainty"] > 0, u
s = json.loads(open(f"{t}/scores.json").read())
assert len(s["scores"]) == 3 and s["scores"][s["best"]] == max(s["scores"]), s
r = json.loads(open(f"{t}/rank.json").read())["ranking"]
assert [x["score"] for x in r] == sorted((x["score"] for x in r), reverse=True), r
print("cli-smoke: vrf features/user/score/rank ok; empty reference set and missing model rejected")
PY

# `vrf serve`: start on a free loopback port, observe a user, score for them, stop on SIGTERM.
$vrf serve --model "$model" --bind 127.0.0.1:0 --store "$tmp/users.sqlite" 2> "$tmp/serve.log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$tmp/serve.log" | sed 's|.*http://||' || true)"
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then cat "$tmp/serve.log" >&2; echo "cli-smoke: vrf serve did not start" >&2; exit 1; fi
python3 - "$tmp/refs.jsonl" > "$tmp/observe.json" <<'PY'
import json, sys
print(json.dumps({"references": [json.loads(l) for l in open(sys.argv[1])]}))
PY
curl -sf "http://$addr/v1/users/cli-user/observe" -H 'Content-Type: application/json' -d @"$tmp/observe.json" > "$tmp/served_user.json"
curl -sf "http://$addr/v1/score" -H 'Content-Type: application/json' \
  -d '{"user": "cli-user", "prompt": "Say something.", "responses": ["Hello there, friend.", "Ok."]}' > "$tmp/served_scores.json"
status="$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v1/score" -H 'Content-Type: application/json' -d '{"prompt": 1}')"
kill -TERM "$pid"
wait "$pid"
grep -q "vrf serve: stopped" "$tmp/serve.log"
python3 - "$tmp" "$status" <<'PY'
import json, sys
t, status = sys.argv[1], sys.argv[2]
u = json.load(open(f"{t}/served_user.json"))
assert u["count"] > 0 and abs(sum(u["weights"]) - 1) < 1e-5, u
s = json.load(open(f"{t}/served_scores.json"))
assert len(s["scores"]) == 2 and s["scores"][s["best"]] == max(s["scores"]), s
assert status == "422", status
PY
# Off loopback without a token, and a store that is not a database, are refused at start.
if $vrf serve --model "$model" --bind 0.0.0.0:0 --store "$tmp/users.sqlite" 2> "$tmp/err"; then
  echo "cli-smoke: a non-loopback bind without a token must fail" >&2; exit 1
fi
grep -q "token" "$tmp/err"
head -c 8192 /dev/urandom > "$tmp/junk.sqlite"
if $vrf serve --model "$model" --store "$tmp/junk.sqlite" 2> "$tmp/err"; then
  echo "cli-smoke: a junk store must be refused" >&2; exit 1
fi
grep -q "junk.sqlite" "$tmp/err"
echo "cli-smoke: vrf serve observe/score ok, stops on SIGTERM; open bind without token and junk store refused"
