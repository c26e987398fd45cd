"""The Python package against the `vrf` CLI on the parity model the Rust tests export
(scripts/test-python.sh sets VRF_TEST_MODEL and VRF_CLI)."""

import json
import os
import pickle
import subprocess
import threading
import time

import numpy as np
import pytest

import vrf

MODEL = os.environ.get("VRF_TEST_MODEL", "target/parity-model")
CLI = os.environ.get("VRF_CLI", "target/debug/vrf")


@pytest.fixture(scope="module")
def model():
    return vrf.Model(MODEL)


@pytest.fixture(scope="module")
def data():
    rows = [json.loads(line) for line in open(os.path.join(MODEL, "data.jsonl"))]
    seen = sorted({r["user"] for r in rows if r["split"] == "target"})
    unseen = sorted({r["user"] for r in rows} - set(seen))
    refs = {
        u: [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows if r["user"] == u and r["split"] == "ref"]
        for u in unseen
    }
    return {"seen": seen, "unseen": unseen, "refs": refs}


def cli(*args, stdin=None):
    out = subprocess.run([CLI, *args, "--model", MODEL], input=stdin, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_dimensions(model):
    manifest = json.load(open(os.path.join(MODEL, "vrf.json")))
    assert (model.k, model.d, model.hidden, model.max_len) == (manifest["k"], manifest["d"], manifest["hidden"], manifest["text"]["max_len"])
    assert len(model.digest) == 64


def test_user_and_scores_equal_the_cli(model, data):
    u = data["unseen"][0]
    refs = data["refs"][u]
    post = model.user(refs)
    want = cli("user", "--refs", "-", stdin=jsonl(refs))[0]
    np.testing.assert_allclose(post.mean, want["mean"], atol=1e-6)
    np.testing.assert_allclose(post.var, want["var"], atol=1e-6)
    np.testing.assert_allclose(post.weights, want["weights"], atol=1e-6)
    assert abs(post.uncertainty - want["uncertainty"]) <= 1e-6 and post.count == len(refs)

    prompt, cands = refs[0]["prompt"], [refs[0]["chosen"], refs[0]["rejected"], "Ok."]
    scores = model.score(post, prompt, cands)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    user_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"vrf-py-user-{os.getpid()}.json")
    with open(user_file, "w") as f:
        json.dump(want, f)
    try:
        s = cli("score", "--user", user_file, "--input", "-", stdin=jsonl([{"prompt": prompt, "responses": cands}]))[0]
    finally:
        os.remove(user_file)
    np.testing.assert_allclose(scores, s["scores"], atol=1e-6)
    assert model.rank(post, prompt, cands) == sorted(range(3), key=lambda i: -scores[i])

    seen = data["seen"][0]
    r = cli("rank", "--seen", seen, "--input", "-", stdin=jsonl([{"prompt": prompt, "responses": cands}]))[0]
    assert model.rank(seen, prompt, cands) == [x["index"] for x in r["ranking"]]
    np.testing.assert_allclose(model.seen_user(seen).weights, cli("user", "--seen", seen)[0]["weights"], atol=1e-6)


def test_features_equal_the_cli(model, data):
    refs = data["refs"][data["unseen"][0]]
    pairs = [(r["prompt"], r["chosen"]) for r in refs]
    hidden, rewards = model.features(pairs)
    assert hidden.shape == (len(pairs), model.hidden) and rewards.shape == (len(pairs), model.k)
    want = cli("features", "--input", "-", stdin=jsonl([{"prompt": p, "response": r} for p, r in pairs]))
    np.testing.assert_allclose(hidden, [w["hidden"] for w in want], atol=1e-6)
    np.testing.assert_allclose(rewards, [w["rewards"] for w in want], atol=1e-6)
    h2, _ = model.features([{"prompt": p, "response": r} for p, r in pairs])
    np.testing.assert_array_equal(hidden, h2)


def test_incremental_state_and_serialisation(model, data):
    refs = data["refs"][data["unseen"][1]]
    state = model.new_state()
    # No observation yet: the model's population prior (cold start), not an error.
    assert state.posterior().cold_start
    for r in refs:
        state.observe([(r["prompt"], r["chosen"], r["rejected"])])
    assert state.count == len(refs)
    batch = model.user(refs)
    np.testing.assert_allclose(state.posterior().mean, batch.mean, atol=1e-5)
    restored = model.load_state(state.to_json())
    np.testing.assert_allclose(restored.posterior().weights, state.posterior().weights, atol=0)
    forgetful = model.new_state()
    forgetful.observe(refs, half_life=1.0)
    assert forgetful.posterior().uncertainty > batch.uncertainty

    p = pickle.loads(pickle.dumps(batch))
    for a in ("mean", "var", "weights"):
        np.testing.assert_array_equal(getattr(p, a), getattr(batch, a))
    assert p.count == batch.count and p.uncertainty == batch.uncertainty
    q = vrf.Posterior.from_json(batch.to_json())
    np.testing.assert_array_equal(q.weights, batch.weights)


def test_bad_inputs_raise_the_right_exception(model, data):
    with pytest.raises(vrf.ModelError, match="vrf.json"):
        vrf.Model("/nonexistent/vrf-model")
    with pytest.raises(vrf.InputError):
        vrf.Model(MODEL, provider="tpu")
    with pytest.raises(vrf.UnknownUserError):
        model.seen_user("no-such-user")
    with pytest.raises(vrf.InputError, match="empty"):
        model.new_state().observe([])
    with pytest.raises(vrf.InputError, match=r"references\[0\]: missing `rejected`"):
        model.user([{"prompt": "p", "chosen": "a"}])
    with pytest.raises(vrf.InputError, match="string"):
        model.score(data["seen"][0], "p", "not a list")
    with pytest.raises(vrf.InputError, match="empty"):
        model.score(data["seen"][0], "p", [])
    with pytest.raises(TypeError, match="got float"):
        model.score(3.5, "p", ["a"])
    with pytest.raises(vrf.InputError):
        vrf.Posterior.from_json('{"mean": [0], "var": [-1], "weights": [1]}')
    with pytest.raises(vrf.InputError):
        model.load_state('{"pooling": "pog", "count": 1, "a": [1], "b": [0]}')
    wrong = vrf.Posterior.from_json(json.dumps({"mean": [0.0] * model.d, "var": [1.0] * model.d, "weights": [1.0]}))
    with pytest.raises(vrf.InputError):
        model.score(wrong, "p", ["a"])
    assert issubclass(vrf.InputError, vrf.VrfError) and issubclass(vrf.ModelError, vrf.VrfError)


def test_reward_fn_on_a_batch_of_mixed_users(model, data):
    seen = data["seen"][:2]
    unseen_refs = data["refs"][data["unseen"][0]]
    prompts = ["Explain ownership.", "Name a colour.", "Explain ownership.", "Say hi."]
    completions = ["One owner per value.", "Blue.", "Dunno.", "Hello there!"]
    users = [seen[0], seen[1], seen[0], seen[1]]
    reward = vrf.reward_fn(model, "user_id")
    got = reward(prompts=prompts, completions=completions, user_id=users)
    want = [float(model.score(u, p, [c])[0]) for u, p, c in zip(users, prompts, completions)]
    np.testing.assert_allclose(got, want, atol=1e-5)

    # A callable choosing a posterior, references or an id per sample; conversational samples.
    post = model.user(unseen_refs)
    specs = [post, unseen_refs, seen[0], post]
    reward = vrf.reward_fn(model, lambda i, row: specs[i])
    conv_prompts = [[{"role": "user", "content": p}] for p in prompts]
    conv_completions = [[{"role": "assistant", "content": c}] for c in completions]
    got = reward(conv_prompts, conv_completions)
    want = [float(model.score(s if not isinstance(s, list) else post, p, [c])[0]) for s, p, c in zip(specs, prompts, completions)]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert reward([], []) == []
    with pytest.raises(vrf.InputError):
        vrf.reward_fn(model, "missing_column")(prompts, completions, user_id=users)


def test_backbone_calls_release_the_gil(model):
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    # The spinner's rate while this thread sleeps (the GIL free)...
    time.sleep(0.05)
    t0, before = time.perf_counter(), ticks[0]
    time.sleep(0.2)
    rate = (ticks[0] - before) / (time.perf_counter() - t0)
    # ...and during a backbone call of at least ~0.2 s. Holding the GIL for the call would let
    # the spinner run one switch interval (5 ms) at most.
    # Enough texts that the call lasts well past the 0.1 s floor below on an idle machine too.
    pairs = [("Explain how ownership works, in detail.", f"Answer {i}: " + "word " * 40) for i in range(1800)]
    t0, before = time.perf_counter(), ticks[0]
    model.features(pairs)
    elapsed = time.perf_counter() - t0
    during = ticks[0] - before
    stop.set()
    t.join()
    assert elapsed > 0.1, elapsed
    assert during > 0.3 * rate * elapsed, (during, rate, elapsed)


def test_the_bundled_onnx_runtime_is_found():
    from vrf import _ortlib

    assert "ORT_DYLIB_PATH" not in os.environ
    path = _ortlib.find()
    assert path is not None and os.path.join("onnxruntime", "capi") in path and os.path.isfile(path), path


def test_more_inputs_and_paths(model, data):
    refs = data["refs"][data["unseen"][0]]
    as_lists = [[r["prompt"], r["chosen"], r["rejected"]] for r in refs]
    np.testing.assert_array_equal(model.user(as_lists).weights, model.user(refs).weights)
    assert set(model.seen_user_ids()) == set(data["seen"])
    post = model.user(refs)
    p = model.preference_probability(post, refs[0]["prompt"], refs[0]["chosen"], refs[0]["rejected"])
    q = model.preference_probability(post, refs[0]["prompt"], refs[0]["rejected"], refs[0]["chosen"])
    assert 0.0 < p < 1.0 and abs(p + q - 1.0) < 1e-5
    with pytest.raises(vrf.InputError, match="half_life"):
        model.new_state().observe(refs, half_life=0.0)
    with pytest.raises(vrf.InputError):
        vrf.Model(MODEL, batch_size=0)
    # `vrf user` output reads back, its reference count as the count.
    want = cli("user", "--refs", "-", stdin=jsonl(refs))[0]
    back = vrf.Posterior.from_json(json.dumps(want))
    assert back.count == len(refs)
    np.testing.assert_array_equal(back.weights, np.asarray(want["weights"], dtype=np.float32))
    # to_json writes f32 values in their shortest form, exactly as the CLI does.
    assert json.loads(post.to_json())["weights"] == want["weights"]


def test_reward_fn_resolves_users_by_content_not_identity(model, data):
    u0, u1 = data["unseen"][:2]
    refs = {u: data["refs"][u] for u in (u0, u1)}
    order = [u0, u1, u0, u1, u1]
    # Fresh lists each sample (as a dataset gives them): freed lists' id()s get reused.
    reward = vrf.reward_fn(model, lambda i, row: [dict(r) for r in refs[order[i]]])
    prompts = ["Explain ownership."] * len(order)
    completions = ["One owner per value."] * len(order)
    got = reward(prompts, completions)
    want = [float(model.score(model.user(refs[u]), prompts[0], completions[:1])[0]) for u in order]
    np.testing.assert_allclose(got, want, atol=1e-5)
    wrong_k = vrf.Posterior.from_json(json.dumps({"mean": [0.0] * model.d, "var": [1.0] * model.d, "weights": [1.0]}))
    with pytest.raises(vrf.InputError, match="K ="):
        vrf.reward_fn(model, lambda i, row: wrong_k)(prompts, completions)


def test_user_ids_that_are_not_strings_are_type_errors(model, data):
    # A dataset with integer user ids: the error names the column, the sample and the type, and
    # comes before the backbone pass.
    prompts, completions = ["Say hi.", "Name a colour."], ["Hello!", "Blue."]
    reward = vrf.reward_fn(model, "user")
    with pytest.raises(TypeError, match=r"^user\[0\] must be a str \(a user id\) or that user's reference triplets, got int$"):
        reward(prompts=prompts, completions=completions, user=[1, 2])
    with pytest.raises(TypeError, match=r"^user\[1\] must be a str .*, got NoneType$"):
        reward(prompts=prompts, completions=completions, user=[data["seen"][0], None])
    with pytest.raises(TypeError, match=r"^user\[0\] .*, got int64$"):
        reward(prompts=prompts, completions=completions, user=np.array([3, 4]))
    ref = data["refs"][data["unseen"][0]][0]
    with pytest.raises(TypeError, match=r"^user\[0\] .*, got dict$"):
        reward(prompts=prompts, completions=completions, user=[ref, ref])
    with pytest.raises(TypeError, match=r"^the user that user_of\(0, row\) returned must be a str \(a user id\), a vrf.Posterior or reference triplets, got int$"):
        vrf.reward_fn(model, lambda i, row: row["uid"])(prompts, completions, uid=[7, 8])
    with pytest.raises(vrf.InputError, match=r"column 'user' is a list of 1, expected a list of 2"):
        reward(prompts=prompts, completions=completions, user=[data["seen"][0]])
    # String ids from a numpy column work.
    seen = data["seen"][:2]
    got = reward(prompts=prompts, completions=completions, user=np.array(seen))
    want = [float(model.score(u, p, [c])[0]) for u, p, c in zip(seen, prompts, completions)]
    np.testing.assert_allclose(got, want, atol=1e-5)

    # The model's own calls that take an id.
    with pytest.raises(TypeError, match=r"^user must be a str \(a seen user's id\) or a vrf.Posterior, got int$"):
        model.score(1, "p", ["a"])
    with pytest.raises(TypeError, match=r"^user must be a str .*, got NoneType$"):
        model.rank(None, "p", ["a"])
    with pytest.raises(TypeError, match=r"^user must be a str .*, got int$"):
        model.preference_probability(2, "p", "a", "b")
    with pytest.raises(TypeError, match=r"^id must be a str \(a user id\), got int$"):
        model.seen_user(1)


def test_a_user_with_no_answers_gets_the_population_prior(model, data):
    # The parity model is a default fit, which has a population prior (cold start).
    assert model.has_prior
    cold = model.user([])
    assert cold.cold_start and cold.count == 0
    assert abs(float(cold.weights.sum()) - 1.0) < 1e-5
    # A fresh state's posterior is the same prior; an answer moves it and clears the flag.
    state = model.new_state()
    fresh = state.posterior()
    assert fresh.cold_start
    np.testing.assert_allclose(fresh.mean, cold.mean, rtol=0, atol=0)
    refs = data["refs"][data["unseen"][0]][:1]
    state.observe(refs)
    one = state.posterior()
    assert not one.cold_start and one.count == 1
    assert float(one.uncertainty) < float(cold.uncertainty)
    scores = model.score(cold, "Say hi.", ["Hello there!", "hi"])
    assert scores.shape == (2,) and np.isfinite(scores).all()
