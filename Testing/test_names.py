import pytest

from GlandSegLib.errors import ModelError
from GlandSegLib.glands import BY_KEY, GLANDS
from GlandSegLib.names import map_model_labels, match_gland

CASES = {
    # TG-263
    "Glnd_Lacrimal_R": "lacrimal_r", "Glnd_Lacrimal_L": "lacrimal_l", "Parotid_R": "parotid_r",
    "Parotid_L": "parotid_l", "Glnd_Submand_R": "submandibular_r", "Glnd_Submand_L": "submandibular_l",
    # DeepMind / TCIA
    "Lacrimal-Rt": "lacrimal_r", "Parotid-Lt": "parotid_l", "Submandibular-Rt": "submandibular_r", "Parotid_Lt": "parotid_l",
    # OpenKBP camelCase and words
    "RightParotid": "parotid_r", "LeftParotid": "parotid_l", "left submandibular gland": "submandibular_l",
    "Right lacrimal gland": "lacrimal_r", "parotid left": "parotid_l",
    # French: D = droite (right), G = gauche (left)
    "Glande_Lacrim_D": "lacrimal_r", "Glande_Lacrim_G": "lacrimal_l", "Parotide_G": "parotid_l",
    "Parotide D": "parotid_r", "Gl_Sous_Max_D": "submandibular_r", "Glande sous-maxillaire gauche": "submandibular_l",
}


@pytest.mark.parametrize("name,key", sorted(CASES.items()))
def test_names_map_to_the_right_gland(name, key):
    assert match_gland(name) is BY_KEY[key]


@pytest.mark.parametrize("name", ["Parotids", "Parotid_L_PRV05", "Parotid_R_opt", "Mandible", "Brainstem",
                                  "Parotid", "Parotid_L+R", "Glnd_Submand_bilat", "BODY", "", "Lacrimal_L_Parotid_L"])
def test_non_gland_or_ambiguous_names_are_not_matched(name):
    assert match_gland(name) is None


def test_team_model_label_order_comes_out_canonical():
    labels = {"background": 0, "Glande_Lacrim_D": 1, "Glande_Lacrim_G": 2, "Glnd_Submand_L": 3,
              "Parotid_R": 4, "Glnd_Submand_R": 5, "Parotid_L": 6}
    mapping, warnings = map_model_labels(labels)
    assert mapping == {1: 1, 2: 2, 3: 6, 4: 3, 5: 5, 6: 4}
    assert warnings == []


def test_extra_structures_are_ignored_with_a_warning_and_missing_glands_reported():
    mapping, warnings = map_model_labels({"background": 0, "Mandible": 1, "Parotid-Lt": 2, "Parotid-Rt": 3})
    assert mapping == {2: 4, 3: 3}
    assert any("Mandible" in w for w in warnings)
    assert sum("does not segment" in w for w in warnings) == 4


@pytest.mark.parametrize("labels,message", [
    ({"background": 0, "Parotid_L": 1, "Parotid-Lt": 2}, "both name"),
    ({"background": 0, "Mandible": 1}, "names none"),
    ({"background": 0, "Parotid_L": [1, 2]}, "region-based"),
])
def test_unusable_label_tables_are_refused(labels, message):
    with pytest.raises(ModelError, match=message):
        map_model_labels(labels)


def test_canonical_table_is_complete_and_ordered():
    assert [g.label for g in GLANDS] == [1, 2, 3, 4, 5, 6]
    assert [g.side for g in GLANDS] == ["R", "L"] * 3
    assert len({g.color for g in GLANDS}) == 6
    for g in GLANDS:
        assert match_gland(g.tg263) is g
        assert match_gland(g.name) is g


def test_ignore_label_of_a_partially_labelled_training_is_not_a_structure():
    from GlandSegLib.training.dataset import label_table

    mapping, warnings = map_model_labels(label_table(ignore_label=True))
    assert mapping == {v: v for v in range(1, 7)}
    assert warnings == []  # nnU-Net never predicts "ignore": nothing to warn about
