"""Manager().dict() / shmring.dict() semantics."""

import pickle

import pytest

import shmring
import _children as ch
from conftest import join_all


def test_dict_methods():
    d = shmring.dict({"a": 1}, b=2)
    assert d["a"] == 1 and d.get("b") == 2 and d.get("zz") is None and d.get("zz", 5) == 5
    d["c"] = [3]
    assert len(d) == 3 and "c" in d and "zz" not in d
    assert sorted(d.keys()) == ["a", "b", "c"] and isinstance(d.keys(), list)
    assert isinstance(d.values(), list) and isinstance(d.items(), list)
    assert sorted(d.items()) == [("a", 1), ("b", 2), ("c", [3])]
    assert sorted(iter(d)) == ["a", "b", "c"]
    c = d.copy()
    assert type(c) is dict and c == {"a": 1, "b": 2, "c": [3]}
    assert str(d) == repr(c) or eval(str(d)) == c
    assert repr(d).startswith("<DictProxy object, typeid 'dict' at ")
    del d["a"]
    assert d.pop("b") == 2 and d.pop("b", "gone") == "gone"
    assert d.setdefault("c", 0) == [3] and d.setdefault("e") is None
    d.update([("f", 6)], g=7)
    d.update({"h": 8})
    assert d["f"] == 6 and d["g"] == 7 and d["h"] == 8
    k, v = d.popitem()
    assert k not in d
    d.clear()
    assert len(d) == 0


def test_dict_key_errors():
    d = shmring.Manager().dict()
    with pytest.raises(KeyError) as e:
        d["missing"]
    assert e.value.args == ("missing",)
    with pytest.raises(KeyError):
        del d["missing"]
    with pytest.raises(KeyError):
        d.pop("missing")
    with pytest.raises(KeyError) as e:
        d.popitem()
    assert e.value.args == ("popitem(): dictionary is empty",)


def test_nested_mutation_is_not_propagated():
    d = shmring.dict(a=[])
    d["a"].append(1)
    assert d["a"] == []
    x = d["a"]
    x.append(1)
    d["a"] = x
    assert d["a"] == [1]


def test_size_limits_are_value_errors():
    d = shmring.Dict(capacity=2, max_key=64, max_value=64)
    d[1] = 1
    d[2] = 2
    with pytest.raises(ValueError, match="full"):
        d[3] = 3
    with pytest.raises(ValueError, match="max_value"):
        d[1] = b"x" * 200
    with pytest.raises(ValueError, match="max_key"):
        d[b"k" * 200] = 1
    assert d[1] == 1


def test_dict_pickles_by_name():
    d = shmring.Manager().dict(x=1)
    d2 = pickle.loads(pickle.dumps(d))
    d2["y"] = 2
    assert d["y"] == 2


def test_manager_context_manager():
    with shmring.Manager() as m:
        d = m.dict()
        q = m.Queue()
        jq = m.JoinableQueue()
        d["k"] = "v"
        q.put(1)
        jq.put(2)
        assert q.get(timeout=5) == 1 and jq.get(timeout=5) == 2
    assert d["k"] == "v"  # still usable while held


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    return repr(a) == repr(b)  # -0.0 stays negative


def test_atomic_keys_and_values_keep_their_exact_type_and_value():
    # Exact None, bool, int, float, bytes and str are stored in a short form
    # (not pickled), their neighbours pickled; keys are compared by the
    # stored bytes, so equal keys of different types stay apart.
    d = shmring.Dict(max_key=1 << 17, max_value=1 << 17)
    ch.dict_store_atomic_objects(d)
    for i, o in enumerate(ch.atomic_objects()):
        assert _same(d[("v", i)], o), (o, d[("v", i)])
        if o == o:
            assert d[o] == i and d[("key", o)] == i
    for k in d.keys():
        if type(k) is tuple and k[0] == "key":
            assert any(_same(k[1], o) for o in ch.atomic_objects())
    # 1, 1.0 and True are three keys (they were three pickles, too).
    e = shmring.dict()
    e[1], e[1.0], e[True] = "int", "float", "bool"
    assert (e[1], e[1.0], e[True], len(e)) == ("int", "float", "bool", 3)
    assert type(e.keys()[0]) in (int, float, bool)


def test_atomic_keys_and_values_cross_processes(ctx):
    d = shmring.Dict(max_key=1 << 17, max_value=1 << 17)
    p = ctx.Process(target=ch.dict_store_atomic_objects, args=(d,))
    p.start()
    join_all([p])
    assert p.exitcode == 0
    for i, o in enumerate(ch.atomic_objects()):
        assert _same(d[("v", i)], o), (o, d[("v", i)])
        if o == o:
            assert d[o] == i


def test_dict_written_by_children(ctx):
    d = shmring.Manager().dict()
    ps = [ctx.Process(target=ch.dict_update, args=(d, i, i * i)) for i in range(3)]
    for p in ps:
        p.start()
    join_all(ps)
    assert sorted(d.items()) == [(0, 0), (1, 1), (2, 4)]


def test_dict_as_pool_argument(ctx):
    d = shmring.Manager().dict()
    with ctx.Pool(2) as pool:
        assert sorted(pool.starmap(ch.pool_dict_set, [(d, k) for k in "abc"])) == ["a", "b", "c"]
    assert sorted(d.keys()) == ["a", "b", "c"]
