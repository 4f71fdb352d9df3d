"""The serving config files the README shows load as documented (a stale example fails here)."""

import re
from pathlib import Path

from ranking.objective import load_objectives
from ranking.rules import load_rules
from suggest.policy import load_policy

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_examples_load(tmp_path):
    block = README.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    parts = re.split(r"^# (\w+)\.toml.*$", block, flags=re.M)
    files = {name: tmp_path / f"{name}.toml" for name in parts[1::2]}
    for (name, path), body in zip(files.items(), parts[2::2]):
        path.write_text(body)
    assert set(files) == {"objectives", "policy", "rules"}
    assert dict(load_objectives(files["objectives"]).get("search", "margin-first").weights)["margin"] == 0.5
    assert load_policy(files["policy"])["search"].constraints.sponsored_positions == (0, 4)
    assert load_rules(files["rules"]).pins[0].position == 0
