"""The objective: quantities from calibrated task scores, weights per surface and arm from one TOML file."""

import numpy as np
import pytest

from ranking.objective import Objective, load_objectives, quantities

SCORES = {"relevance": np.array([0.5, 0.2]), "purchase": np.array([0.1, 0.15]), "margin": np.array([1.0, -0.5]),
          "churn": np.array([0.3, 0.1])}


def test_quantities_follow_their_definitions():
    q = quantities(SCORES, price=np.array([4.0, 10.0]), bid=np.array([0.0, 0.5]), bought_before=np.array([1.0, 0.0]))
    assert q["gtv"] == pytest.approx([0.4, 1.5])                  # P(cart) * price
    assert q["margin"] == pytest.approx([0.1, 0.0])               # a negative predicted margin counts as none
    assert q["ads"] == pytest.approx([0.0, 0.1])                  # only sponsorable items earn ads value
    assert q["retention"] == pytest.approx([-0.3, -0.1]) and q["habit"] == pytest.approx([0.1, 0.0])


def test_value_is_the_sum_of_contributions_and_weights_move_the_order():
    q = quantities(SCORES, price=np.array([4.0, 10.0]), bid=np.zeros(2), bought_before=np.zeros(2))
    relevance_only, gtv_first = Objective({"relevance": 1.0}), Objective({"relevance": 1.0, "gtv": 1.0})
    assert np.argmax(relevance_only.value(q)) == 0 and np.argmax(gtv_first.value(q)) == 1
    c = gtv_first.contributions(q)
    assert sum(c.values()) == pytest.approx(gtv_first.value(q))


def test_arms_override_only_what_they_name(tmp_path):
    path = tmp_path / "objectives.toml"
    path.write_text("[search]\nrelevance = 1.0\ngtv = 0.05\n[arms.margin-first.search]\nmargin = 0.5\n")
    objectives = load_objectives(path)
    assert dict(objectives.get("search").weights) == {"relevance": 1.0, "gtv": 0.05}
    assert dict(objectives.get("search", "margin-first").weights) == {"relevance": 1.0, "gtv": 0.05, "margin": 0.5}
    assert dict(objectives.get("suggest", "margin-first").weights) == {"relevance": 1.0}  # arm leaves suggest alone


BAD_FILES = [
    ("[search]\nrelevnce = 1.0\n", "search.relevnce: unknown quantity"),
    ("[search]\ngtv = 'lots'\n", "search.gtv: expected a finite number"),
    ("[serach]\nrelevance = 1.0\n", "unknown section"),
    ("[arms.a.checkout]\nrelevance = 1\n", "arms.a: expected sub-tables"),
    ("[search\n", "cannot read objectives"),
]


@pytest.mark.parametrize("text, message", BAD_FILES)
def test_bad_objective_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "objectives.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        load_objectives(path)
    assert str(path) in str(e.value)


def test_unknown_surface_or_arm_is_refused(tmp_path):
    path = tmp_path / "o.toml"
    path.write_text("")
    with pytest.raises(ValueError, match="surface"):
        load_objectives(path).get("checkout")
    with pytest.raises(ValueError, match="arm"):
        load_objectives(path).get("search", "nope")
