"""A model fitted on external feature vectors (format v3, `input.kind = "features"`): every
call takes vectors (lists or numpy arrays) where a text model takes texts, with the Rust
runtime's numbers (`parity.json`, written by runtime/examples/features_fixture.rs beside the
model; scripts/test-python.sh sets VRF_TEST_FEATURES_MODEL), and each wrong input gets a
named error."""

import json
import os

import numpy as np
import pytest

import vrf

FEATURES_MODEL = os.environ.get("VRF_TEST_FEATURES_MODEL", "target/py-features-model")
TEXT_MODEL = os.environ.get("VRF_TEST_MODEL", "target/parity-model")
TOL = dict(rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def fm():
    return vrf.Model(FEATURES_MODEL)


@pytest.fixture(scope="module")
def tm():
    return vrf.Model(TEXT_MODEL)


@pytest.fixture(scope="module")
def want():
    return json.load(open(os.path.join(FEATURES_MODEL, "parity.json")))


def assert_posterior(got, want):
    for key in ("mean", "var", "weights"):
        np.testing.assert_allclose(getattr(got, key), want[key], **TOL)
    assert abs(got.uncertainty - want["uncertainty"]) <= 1e-6


def test_input_says_what_the_model_takes(fm, tm):
    assert fm.input == {"kind": "features", "dim": 6}
    assert tm.input == {"kind": "text"}
    assert fm.max_len is None and fm.hidden == 6 and fm.k == 4


def test_numbers_equal_the_rust_runtime(fm, want):
    refs = want["references"]
    # Dicts of lists, (chosen, rejected) pairs of arrays, and one dict of two [N, D] arrays.
    user = fm.user(refs)
    assert_posterior(user, want["user"])
    assert user.count == len(refs)
    pairs = [(np.asarray(r["chosen"], np.float64), np.asarray(r["rejected"], np.float32)) for r in refs]
    np.testing.assert_array_equal(fm.user(pairs).mean, user.mean)
    batch = {"chosen": np.array([r["chosen"] for r in refs], np.float32), "rejected": np.array([r["rejected"] for r in refs])}
    np.testing.assert_array_equal(fm.user(batch).weights, user.weights)

    cands = np.array(want["candidates"], dtype=np.float32)
    scores = fm.score(user, cands)
    assert scores.dtype == np.float32 and scores.shape == (len(cands),)
    np.testing.assert_allclose(scores, want["scores"], **TOL)
    np.testing.assert_array_equal(fm.score(user, features=want["candidates"]), scores)
    np.testing.assert_array_equal(fm.score(user, cands.astype(np.float64)), scores)
    assert fm.rank(user, cands) == want["ranking"]
    np.testing.assert_allclose(fm.score("user-0", cands), want["seen_scores"], **TOL)

    p = fm.preference_probability(user, cands[0], cands[1])
    assert abs(p - want["preference_probability"]) <= 1e-6
    assert fm.preference_probability(user, a=want["candidates"][0], b=cands[1]) == p

    hidden, rewards = fm.features(cands)
    np.testing.assert_array_equal(hidden, cands)
    np.testing.assert_allclose(rewards, want["rewards"], **TOL)


def test_state_and_questions_equal_the_rust_runtime(fm, want):
    refs, questions = want["references"], want["questions"]
    state = fm.new_state()
    got = state.question_values(questions)
    for g, w in zip(got, want["fresh_question_values"]):
        for key in ("p_first", "information_gain", "expected_uncertainty"):
            assert abs(g[key] - w[key]) <= 1e-6, (key, g, w)
    state.observe(refs[:1])
    state.observe([(r["chosen"], r["rejected"]) for r in refs[1:]])
    assert state.count == len(refs)
    assert_posterior(state.posterior(), want["state_posterior"])
    got = state.question_values({"a": np.array([q["a"] for q in questions]), "b": np.array([q["b"] for q in questions])})
    for g, w in zip(got, want["question_values"]):
        for key in ("p_first", "information_gain", "expected_uncertainty"):
            assert abs(g[key] - w[key]) <= 1e-6, (key, g, w)
    gains = [w["information_gain"] for w in want["question_values"]]
    assert state.next_question(questions) == int(np.argmax(gains))
    restored = fm.load_state(state.to_json())
    np.testing.assert_array_equal(restored.posterior().mean, state.posterior().mean)

    forgetful = fm.new_state()
    forgetful.observe(refs, half_life=1.0)  # decay 0.5 per reference, as the fixture's
    assert_posterior(forgetful.posterior(), want["forgetful_posterior"])


def test_texts_to_a_features_model_name_the_argument(fm, want):
    takes = "this model takes feature vectors of dimension 6, not texts"
    with pytest.raises(ValueError, match=rf"^prompt: {takes}$"):
        fm.score("user-0", "a prompt", ["a", "b"])
    with pytest.raises(ValueError, match=r"^responses: this model takes feature vectors"):
        fm.score("user-0", responses=["a", "b"])
    with pytest.raises(ValueError, match=rf"^features\[0\]: {takes}$"):
        fm.score("user-0", ["a", "b"])
    with pytest.raises(ValueError, match=rf"^references\[0\]: {takes}$"):
        fm.user([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(ValueError, match=rf"^references\[0\]: {takes}$"):
        fm.new_state().observe([("p", "a", "b")])
    with pytest.raises(ValueError, match=rf"^questions\[0\]: {takes}$"):
        fm.new_state().question_values([{"prompt": "p", "a": "x", "b": "y"}])
    with pytest.raises(ValueError, match=rf"^prompt: {takes}$"):
        fm.preference_probability("user-0", "p", "a", "b")
    # vrf.InputError is a ValueError and a vrf.VrfError.
    assert issubclass(vrf.InputError, ValueError) and issubclass(vrf.InputError, vrf.VrfError)


def test_vectors_to_a_text_model_name_the_argument(tm):
    seen = tm.seen_user_ids()[0]
    v = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match=r"^features: this model takes texts \(a prompt and responses\), not feature vectors$"):
        tm.score(seen, features=v)
    with pytest.raises(ValueError, match=r"^prompt: this model takes texts, not feature vectors$"):
        tm.score(seen, v)
    with pytest.raises(ValueError, match=r"^responses: this model takes texts, not feature vectors$"):
        tm.rank(seen, "p", v)
    with pytest.raises(ValueError, match=r"^references\[0\]: this model takes texts, not feature vectors$"):
        tm.user([{"chosen": [0.1] * 6, "rejected": [0.2] * 6}])
    with pytest.raises(ValueError, match=r"^references: this model takes texts, not feature vectors$"):
        tm.user({"chosen": v, "rejected": v})
    with pytest.raises(ValueError, match=r"^references\[0\]: this model takes texts"):
        tm.new_state().observe([(v[0], v[1])])
    with pytest.raises(ValueError, match=r"^questions\[0\]: this model takes texts"):
        tm.new_state().question_values([(v[0], v[1])])
    with pytest.raises(ValueError, match=r"^a: this model takes texts"):
        tm.preference_probability(seen, "p", v[0], "b")
    with pytest.raises(ValueError, match=r"^vectors: this model takes texts"):
        tm.features(vectors=v)


def test_text_questions_on_a_text_model(tm):
    seen = tm.seen_user_ids()[0]
    state = tm.new_state()
    qs = [("Say hi.", "Hello there!", "hi"), {"prompt": "Name a colour.", "a": "Blue.", "b": "Dunno."}]
    values = state.question_values(qs)
    assert len(values) == 2 and all(0.0 < v["p_first"] < 1.0 and v["information_gain"] >= 0.0 for v in values)
    assert state.next_question(qs) == int(np.argmax([v["information_gain"] for v in values]))
    with pytest.raises(ValueError, match="questions: empty"):
        state.question_values([])
    assert tm.score(seen, "Say hi.", ["Hello!"]).shape == (1,)


def test_bad_vectors_name_the_argument_row_and_component(fm, want):
    good = want["candidates"][0]
    with pytest.raises(ValueError, match=r"^features\[1\]: 5 values; this model takes feature vectors of dimension 6$"):
        fm.score("user-0", [good, good[:5]])
    with pytest.raises(ValueError, match=r"^features\[1\]\[3\]: NaN is not finite$"):
        fm.score("user-0", [good, good[:3] + [float("nan")] + good[4:]])
    bad = np.array([good, good], np.float64)
    bad[0, 2] = np.inf
    with pytest.raises(ValueError, match=r"^features\[0\]\[2\]: inf is not finite$"):
        fm.score("user-0", bad)
    bad[0, 2] = 1e300
    with pytest.raises(ValueError, match=r"^features\[0\]\[2\]: 1e300 is beyond float32's range$"):
        fm.score("user-0", bad)
    with pytest.raises(ValueError, match=r"^features: expected a 2-D array \[N, 6\], got an array of shape \[6\]$"):
        fm.score("user-0", np.array(good))
    with pytest.raises(ValueError, match=r"^features: empty$"):
        fm.score("user-0", np.zeros((0, 6), np.float32))
    with pytest.raises(ValueError, match=r"^references\[0\]\.rejected: 7 values"):
        fm.user([{"chosen": good, "rejected": good + [1.0]}])
    with pytest.raises(ValueError, match=r"^references\[0\]: missing `rejected`$"):
        fm.user([{"chosen": good}])
    with pytest.raises(ValueError, match=r"^references\[0\]\.chosen\[4\]: NaN is not finite$"):
        fm.new_state().observe([(good[:4] + [float("nan")] + good[5:], good)])
    with pytest.raises(ValueError, match=r"^references: 2 `chosen` rows but 1 `rejected` rows$"):
        fm.user({"chosen": [good, good], "rejected": [good]})
    with pytest.raises(ValueError, match=r"^b: 2 values"):
        fm.preference_probability("user-0", good, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^questions\[0\]\.b\[0\]: inf is not finite$"):
        fm.new_state().question_values([{"a": good, "b": [float("inf")] + good[1:]}])


def test_wrong_python_types_are_type_errors(fm, want):
    good = want["candidates"][0]
    with pytest.raises(TypeError, match=r"^features\[0\]\[2\] must be a number, got NoneType$"):
        fm.score("user-0", [good[:2] + [None] + good[3:]])
    with pytest.raises(TypeError, match=r"^features\[0\]\[1\] must be a number, got str$"):
        fm.score("user-0", [[0.0, "x"] + good[2:]])
    with pytest.raises(TypeError, match=r"^features: expected a float32 or float64 array, got dtype int64"):
        fm.score("user-0", np.zeros((1, 6), np.int64))
    with pytest.raises(TypeError, match=r"^features must be a list of vectors or a 2-D numpy array, got int$"):
        fm.score("user-0", 3)
    with pytest.raises(TypeError, match=r"^references\[0\] must be .*, got int$"):
        fm.user([5])
    with pytest.raises(TypeError, match=r"^missing the candidates' feature vectors"):
        fm.score("user-0")
    with pytest.raises(TypeError, match=r"^user must be a str"):
        fm.score(1.5, [good])


def test_reward_fn_on_vectors(fm, want):
    cands = np.array(want["candidates"], np.float32)
    refs = want["references"]
    users = ["user-0", "user-1", refs, "user-0"]
    reward = vrf.reward_fn(fm, lambda i, row: users[i])
    got = reward(None, cands)
    post = fm.user(refs)
    expect = [float(fm.score(u if not isinstance(u, list) else post, cands[i : i + 1])[0]) for i, u in enumerate(users)]
    np.testing.assert_allclose(got, expect, atol=1e-5)
    np.testing.assert_allclose(got[2], want["scores"][2], atol=1e-5)
    # TRL passes prompts too: ignored by a features model, but their count is checked.
    by_column = vrf.reward_fn(fm, "user_id")(["p"] * 4, list(cands), user_id=["user-0", "user-1", "user-1", "user-0"])
    assert len(by_column) == 4
    with pytest.raises(ValueError, match=r"^completions\[0\]: this model takes feature vectors of dimension 6, not texts$"):
        reward(None, ["text"] * 4)
    with pytest.raises(vrf.InputError, match="3 prompts but 4 completions"):
        reward(["p"] * 3, cands)
