import pytest

from suggest.text import fold_key, has_control_chars, normalize, singular


@pytest.mark.parametrize("raw, expected", [
    ("  Greek   Yogurt ", "greek yogurt"),          # case and whitespace
    ("Ben & Jerry's", "ben & jerry's"),            # & and inner apostrophes kept: brands use them
    ("Half-and-Half, 16 oz.", "half and half 16 oz"),  # punctuation becomes space
    ("ＢＡＮＡＮＡ", "banana"),                      # NFKC folds full-width letters
    ("Crème Fraîche", "crème fraîche"),            # accents are kept, only case is folded
    ("'quoted'", "quoted"),                        # edge apostrophes are punctuation
    ("2% Milk", "2% milk"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("word, expected", [
    ("bananas", "banana"), ("berries", "berry"), ("tomatoes", "tomato"), ("peaches", "peach"),
    ("hummus", "hummus"), ("glass", "glass"), ("asparagus", "asparagus"), ("oats", "oats"), ("eggs", "egg"),
])
def test_singular(word, expected):
    assert singular(word) == expected


def test_plural_variants_share_a_key():
    assert fold_key("organic bananas") == fold_key("organic banana")


def test_control_characters_detected():
    assert has_control_chars("a\x00b") and has_control_chars("\x7f") and has_control_chars("new\nline")
    assert has_control_chars("tab\t") and not has_control_chars("crème brûlée 2% ½")
