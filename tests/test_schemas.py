import json

import pytest
from conftest import SHARED_ISBI

from sdk.errors import SchemaError
from sdk.schemas import AARIZ29, CEPH31, ISBI19, get_schema, schema_from_dict


def test_builtin_sizes():
    assert (ISBI19.k, AARIZ29.k, CEPH31.k) == (19, 29, 31)
    assert CEPH31.names[:29] == AARIZ29.names and CEPH31.ruler[:2] == ("ruler_p1", "ruler_p2")


@pytest.mark.skipif(not SHARED_ISBI.is_dir(), reason="shared ISBI data not present")
def test_isbi_order_matches_the_dataset():
    names = (SHARED_ISBI / "landmarks.txt").read_text().split()
    assert list(ISBI19.names) == names


def test_aliases():
    assert ISBI19.index("A-point") == ISBI19.names.index("subspinale")
    assert AARIZ29.index("Soft Tissue Nasion") == AARIZ29.names.index("soft_tissue_nasion")
    with pytest.raises(KeyError):
        ISBI19.index("pronasale")


def test_custom_schema_files(tmp_path):
    t = tmp_path / "mine.txt"
    t.write_text("# my points\nsella\nnasion\n\nmenton\n")
    s = get_schema(t)
    assert s.id == "mine" and s.names == ("sella", "nasion", "menton")
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"id": "r", "landmarks": ["a", "b", "c"], "ruler": ["a", "b", 20]}))
    assert get_schema(j).ruler == ("a", "b", 20.0)
    assert schema_from_dict(CEPH31.to_dict()) is CEPH31


@pytest.mark.parametrize("data,match", [
    ({"landmarks": ["a", "a"]}, "twice"),
    ({"landmarks": []}, "no landmarks"),
    ({"landmarks": ["a b"]}, "must be letters"),
    ({"landmarks": ["a", "b"], "ruler": ["a", "z", 10]}, "ruler point"),
    ({"landmarks": ["a", "b"], "ruler": ["a", "b", -1]}, "> 0"),
    ({"names": ["a"]}, "'landmarks'"),
])
def test_bad_schemas(data, match):
    with pytest.raises(SchemaError, match=match):
        schema_from_dict(data)


def test_unknown_schema():
    with pytest.raises(SchemaError, match="unknown schema"):
        get_schema("isbi20")


def test_every_builtin_schema_gives_every_measurement_its_landmarks_allow():
    """Measurements find their landmarks through names and aliases: aariz29's a_point is ISBI's subspinale."""
    import numpy as np

    from sdk.measurements import MEASUREMENTS, measure, unavailable
    from sdk.schemas import AARIZ29, CEPH31, ISBI19

    rng = np.random.default_rng(0)
    ref = {n: rng.uniform(0, 1000, 2) for n in ISBI19.names}
    expected = measure(ref, ISBI19, spacing=0.1)
    missing = unavailable(ISBI19)         # incisor apices, condylion, pronasale, molars: aariz29 has them
    assert set(expected) | set(missing) == {m.name for m in MEASUREMENTS} and not set(expected) & set(missing)
    assert {"U1-NA", "IMPA", "Wits", "Co-Gn", "Upper lip to E-line"} <= set(missing)
    assert "MW" not in measure(ref, ISBI19) and "spacing" in unavailable(ISBI19, spacing=None)["MW"]
    for schema in (AARIZ29, CEPH31):
        same = {}                       # the schema's own name of each ISBI landmark it has (aliases resolved)
        for k in ISBI19.names:
            try:
                same[schema.names[schema.index(k)]] = k
            except KeyError:
                pass
        pts = {n: ref[same[n]] if n in same else rng.uniform(0, 1000, 2) for n in schema.names}
        got = measure(pts, schema, spacing=0.1)
        assert set(got) == {m.name for m in MEASUREMENTS} and unavailable(schema) == {}, (schema.id, set(got))
        for k in expected:
            assert got[k]["value"] == expected[k]["value"], (schema.id, k)
    assert measure({"a_point": [0, 0]}) == {}        # without a schema only exact names count

