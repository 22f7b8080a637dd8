"""Data sources: determinism, rank slicing, grammar validity, knowledge positions, p1/p2/p3."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import pytest
import torch

from scalelab.data import (
    BOS,
    EOS,
    IGNORE_INDEX,
    PAD,
    REGISTRY,
    Tokenizer,
    build,
    check_params,
    inputs_targets,
    param_defaults,
)
from scalelab.data.base import cache_dir
from scalelab.data.pcfg import N_SPECIAL, make_grammar
from scalelab.data.pools import ATTRIBUTES, MONTHS, PRONOUNS

SMALL_PCFG = {"n_tokens": 200_000, "eval_tokens": 20_000}


@pytest.fixture(scope="module", autouse=True)
def _cache(module_cache):
    """Every test of this module prepares its data in the module's own cache."""


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    """uint32 tokens 0..9999: each token is its own position, so windows show where they came from."""
    path = tmp_path_factory.mktemp("tok") / "train.bin"
    np.arange(10_000, dtype=np.uint32).tofile(path)
    return path


def make(name, seed=0, token_path=None):
    params = {
        "pcfg": SMALL_PCFG,
        "bios": {"n_people": 300, "templates": "multi", "permute": True},
        "biod": {"n_people": 200},
        "tokens": {"path": str(token_path), "dtype": "uint32", "eval_fraction": 0.1},
    }[name]
    return build(name, seed=seed, **params)


# ---- registry and errors -------------------------------------------------------------------


def test_registry_defaults_and_errors(tmp_path):
    assert set(REGISTRY) == {"pcfg", "bios", "biod", "tokens", "python_stdlib"}
    assert param_defaults("biod") == {
        "n_people": 500,
        "K": 8,
        "C": 1,
        "D": 64,
        "L": 1,
        "T": 64,
        "name_pool": 64,
        "data_seed": 0,
    }
    assert param_defaults("bios")["templates"] == "single"
    assert check_params("pcfg", {"depth": 3})["depth"] == 3
    bad = [
        (lambda: build("nope"), "data.name: unknown source 'nope'; choose one of pcfg"),
        (lambda: build("biod", n_people=0), "data.params.n_people: must be a positive int"),
        (lambda: build("biod", n_people=True), "data.params.n_people: must be a positive int"),
        (lambda: build("biod", colour=1), "data.params.colour: unknown parameter"),
        (lambda: build("biod", D=65), "data.params.D: must be <= T^L"),
        (lambda: build("biod", n_people=9, name_pool=2), "data.params.n_people: must be <="),
        (lambda: build("bios", templates="many"), "data.params.templates: must be one of"),
        (lambda: build("bios", permute=1), "data.params.permute: must be true or false"),
        (lambda: check_params("pcfg", {"min_rule_len": 4}), "data.params.min_rule_len"),
        (lambda: check_params("pcfg", {"n_terminals": 1, "n_rules": 5}), "data.params.n_terminals"),
        (lambda: build("tokens"), "data.params.path: required"),
        (lambda: build("tokens", path=str(tmp_path / "no.bin")), "data.params.path: no such file"),
        (lambda: build("tokens", path="x", eval_fraction=1.5), "data.params.eval_fraction"),
        (lambda: build("biod", seed=-1), "data.seed: must be a non-negative int"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message.replace("^", r"\^")):
            call()
    src = make("biod")
    with pytest.raises(ValueError, match="batch_size: 6 is not divisible by world size 4"):
        src.batch(0, 6, 12, rank=0, world=4)
    with pytest.raises(ValueError, match="seq_len: source 'biod' needs seq_len >= 12"):
        src.batch(0, 4, 8)
    with pytest.raises(ValueError, match="rank/world"):
        src.batch(0, 4, 12, rank=2, world=2)


# ---- determinism and rank slices (every source) --------------------------------------------


@pytest.mark.parametrize("name", ["pcfg", "bios", "biod", "tokens"])
def test_batches_deterministic_and_rank_sliced(name, token_file):
    a, b = make(name, token_path=token_file), make(name, token_path=token_file)
    seq = 12 if name == "biod" else 40
    t = a.batch(5, 8, seq)
    assert t.shape == (8, seq + 1) and t.dtype == torch.int64
    assert torch.equal(t, b.batch(5, 8, seq))  # same seed, same step: same batch
    assert not torch.equal(t, a.batch(6, 8, seq))  # next step: different batch
    assert not torch.equal(t, make(name, seed=1, token_path=token_file).batch(5, 8, seq))
    for world in (2, 4):  # ranks' slices, concatenated, are the 1-rank global batch
        parts = [a.batch(5, 8, seq, rank=r, world=world) for r in range(world)]
        assert all(p.shape == (8 // world, seq + 1) for p in parts)
        assert torch.equal(torch.cat(parts), t)
    e = a.eval_batch(6, seq)
    assert e.shape == (6, seq + 1) and torch.equal(e, make(name, 3, token_file).eval_batch(6, seq))
    assert ((t >= 0) & (t < a.vocab_size)).all()  # these have no padding at these lengths
    json.dumps(a.describe())  # JSON-able


# ---- pcfg ----------------------------------------------------------------------------------


def derives(g, sym, level, w) -> bool:
    """Independent recogniser: can nonterminal `sym` on `level` derive the terminals w?"""

    @cache
    def can(sym, level, i, j):
        for r in range(g.lengths.shape[1]):
            kids = g.children(sym, r)
            if level == g.depth - 1:
                if j - i == len(kids) and all(w[i + m] == k for m, k in enumerate(kids)):
                    return True
            elif seq(tuple(kids), level + 1, i, j):
                return True
        return False

    @cache
    def seq(kids, level, i, j):
        if len(kids) == 1:
            return can(kids[0], level, i, j)
        return any(
            can(kids[0], level, i, m) and seq(kids[1:], level, m, j) for m in range(i + 1, j)
        )

    return can(sym, level, 0, len(w))


def test_pcfg_sentences_parse_and_unigram_matches_grammar():
    src = make("pcfg")
    g = src.grammar
    s = np.asarray(src.stream[:20_000])
    starts, ends = np.flatnonzero(s == BOS), np.flatnonzero(s == EOS)
    sentences = [
        s[b + 1 : e] - N_SPECIAL for b, e in zip(starts, ends[ends > starts[0]], strict=False)
    ]
    assert len(sentences) > 100
    lengths = [len(x) for x in sentences]
    assert 2**g.depth <= min(lengths) and max(lengths) <= 3**g.depth  # rules of 2-3 symbols
    for w in sentences[:60]:
        assert derives(g, 0, 0, tuple(int(x) for x in w))
    assert not derives(g, 0, 0, (0,) * 16)  # some strings are not in the language
    # expected terminal counts per sentence by the recursion E(a) = mean_r sum_children E(child)
    expect: dict[int, np.ndarray] = {}
    for level in range(g.depth - 1, -1, -1):
        for a in g.level_ids(level):
            e = np.zeros(g.n_terminals)
            for r in range(g.lengths.shape[1]):
                for c in g.children(a, r):
                    e += np.eye(g.n_terminals)[c] if level == g.depth - 1 else expect[c]
            expect[int(a)] = e / g.lengths.shape[1]
    p = np.concatenate([[0, 1, 1], expect[0]])
    p /= p.sum()
    h_exact = -(p[p > 0] * np.log(p[p > 0])).sum()
    d = src.describe()
    assert d["unigram_entropy"] == pytest.approx(h_exact, abs=0.01)
    assert d["mean_tokens_per_sentence"] == pytest.approx(expect[0].sum() + 2)
    assert d["entropy_rate"] < d["entropy_rate_upper"] + 3 * d["entropy_rate_se"]
    assert d["entropy_rate"] < 0.5 * d["unigram_entropy"]  # real structure to learn


def test_pcfg_inside_probabilities_sum_to_one():
    """Enumerate every derivation of a small grammar: inside log-probs match, total mass is 1."""
    g = make_grammar(3, 2, 2, 1, 2, 2, seed=4)

    def expand(sym, level):  # yields (terminals, probability)
        for r in range(g.lengths.shape[1]):
            parts = [[((), 1.0 / g.lengths.shape[1])]]
            for c in g.children(sym, r):
                parts.append([((c,), 1.0)] if level == g.depth - 1 else list(expand(c, level + 1)))
            combos = [((), 1.0)]
            for options in parts:
                combos = [(w + v, p * q) for w, p in combos for v, q in options]
            yield from combos

    prob: dict[tuple, float] = {}
    for w, p in expand(0, 0):
        prob[w] = prob.get(w, 0.0) + p
    assert sum(prob.values()) == pytest.approx(1.0)
    for w, p in prob.items():
        assert g.log_prob(np.array(w)) == pytest.approx(math.log(p))


def test_pcfg_train_eval_disjoint_and_cached():
    src = make("pcfg")
    for step in range(20):
        o = src.train_offsets(step, 16, 64)
        assert o.min() >= 0 and o.max() + 65 <= src.n_train
    assert src.eval_offsets(16, 64).min() >= src.n_train
    e = src.eval_batch(16, 64)
    assert torch.equal(
        e[3], torch.from_numpy(np.array(src.stream[src.eval_offsets(16, 64)[3] :][:65])).long()
    )
    folder = cache_dir("pcfg", src.params, 1)
    assert {"tokens.npy", "tokenizer.json", "meta.json"} <= {p.name for p in folder.iterdir()}
    assert Tokenizer.load(folder / "tokenizer.json") == src.tokenizer
    assert np.array_equal(np.load(folder / "tokens.npy"), src.stream)


def test_cache_written_atomically_by_concurrent_builders():
    params = {**SMALL_PCFG, "grammar_seed": 7}
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: build("pcfg", **params), range(2))
    assert np.array_equal(np.asarray(a.stream), np.asarray(b.stream))
    folder = cache_dir("pcfg", a.params, 1)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert np.array_equal(np.asarray(build("pcfg", **params).stream), np.asarray(a.stream))


@pytest.mark.slow
def test_pcfg_defaults_are_learnable_by_a_tiny_gpt():
    """d_model 64, 2 layers: eval loss well below the unigram entropy in 150 steps of 8 x 32."""
    torch.manual_seed(0)
    src = build("pcfg", n_tokens=1 << 20)
    seq = 32
    layer = torch.nn.TransformerEncoderLayer(64, 4, 256, 0.0, batch_first=True, norm_first=True)
    emb, pos = torch.nn.Embedding(src.vocab_size, 64), torch.nn.Embedding(seq, 64)
    body = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    head = torch.nn.Sequential(torch.nn.LayerNorm(64), torch.nn.Linear(64, src.vocab_size))
    mods = torch.nn.ModuleList([emb, pos, body, head])
    mask = torch.nn.Transformer.generate_square_subsequent_mask(seq)

    def loss(t):
        x, y = inputs_targets(t)
        h = body(emb(x) + pos.weight, mask=mask, is_causal=True)
        return torch.nn.functional.cross_entropy(head(h).flatten(0, 1), y.flatten())

    opt = torch.optim.AdamW(mods.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and robust on a busy machine
    try:
        for step in range(150):
            opt.zero_grad()
            loss(src.batch(step, 8, seq)).backward()
            opt.step()
        with torch.no_grad():
            final = loss(src.eval_batch(64, seq)).item()
    finally:
        torch.set_num_threads(threads)
    h1 = src.describe()["unigram_entropy"]
    assert final < 0.8 * h1, (final, h1)


# ---- bioS ----------------------------------------------------------------------------------


def test_bios_pools_names_and_recorded_positions():
    src = build("bios", n_people=400, templates="multi", data_seed=3)
    p = src.pools
    pools = (p.first, p.middle, p.last, p.cities, p.universities, p.majors, p.employers)
    assert tuple(map(len, pools)) == (400, 400, 1000, 200, 300, 100, 263)
    assert len({x for pool in pools for x in pool}) == sum(map(len, pools))  # all distinct
    assert len(p.days) * len(MONTHS) * len(p.years) == 12 * 28 * 200
    meta = src.knowledge_meta()
    assert math.log2(meta["n0"]) == pytest.approx(27.25, abs=0.01)
    assert math.log2(meta["S0"]) == pytest.approx(47.59, abs=0.01)
    people = [src.person(i) for i in range(400)]
    assert len({x["name"] for x in people}) == 400  # unique names
    for x in people:
        first, middle, last = x["name"].split()
        assert first in p.first and middle in p.middle and last in p.last
        assert x["birth_city"] in p.cities and x["university"] in p.universities
        assert x["major"] in p.majors and x["gender"] in PRONOUNS
        assert x["work_city"] == p.cities[p.employer_city[p.employers.index(x["employer"])]]
        day, month, year = x["birth_date"].split()
        assert int(day) in range(1, 29) and month in MONTHS and 1900 <= int(year) < 2100
    facts = src.fact_eval()
    assert facts.tokens.shape[0] == 400 and facts.attributes == ATTRIBUTES
    for r in range(400):
        row, x = facts.tokens[r], people[int(facts.people[r])]
        n_real = int((row != IGNORE_INDEX).sum())
        assert row[0] == BOS and row[n_real - 1] == EOS and (row[n_real:] == IGNORE_INDEX).all()
        text = src.tokenizer.decode(row)
        assert text.startswith(x["name"])  # the first sentence names the person
        # target j is token j + 1: decode the recorded spans
        assert src.tokenizer.decode(row[1:][facts.name_mask[r]]) == x["name"]
        for k, a in enumerate(ATTRIBUTES):
            assert src.tokenizer.decode(row[1:][facts.value_attr[r] == k]) == x[a], (r, a)
            first = row[1:][facts.first_chunk[r] & (facts.value_attr[r] == k)]
            assert src.tokenizer.decode(first) == x[a].split()[0]
        assert n_real == len(text.split()) + 2  # <bos> bio <eos>
    assert set(facts.tokens[facts.tokens >= 0].tolist()) <= set(meta["used_token_ids"])


def test_bios_training_rows_are_biographies():
    src = build("bios", n_people=50, permute=True)
    t = src.batch(0, 8, 200)
    known = {src.person(i)["name"]: src.person(i) for i in range(50)}
    starts, n_bios = set(), 0
    for row in t:  # complete `<bos> bio <eos>` units inside each row
        for seg in src.tokenizer.decode(row, skip_special=False).split("<bos>")[1:]:
            if "<eos>" not in seg:
                continue  # cut by the end of the row
            b = seg.split("<eos>")[0].strip()
            x = known[" ".join(b.split()[:3])]
            assert b.count(" . ") == 5 and b.count(f"{x['gender']} ") == 5
            for a in ATTRIBUTES[1:]:
                assert f" {x[a]} ." in b
            starts.add(b.split()[3])
            n_bios += 1
    assert n_bios >= 8 * (200 // 60 - 1)
    assert len(starts) > 1  # permute: the named sentence is not always the birth date
    mean = src.knowledge_meta()["tokens_per_person"]  # single templates: exact
    rows = src.fact_eval().tokens
    assert mean == pytest.approx((rows >= 0).sum().item() / len(rows))
    assert src.tokens_per_epoch == round(50 * mean)


# ---- bioD ----------------------------------------------------------------------------------


def test_biod_compact_format_pools_and_meta():
    src = build("biod")  # N = 500, K = 8, C = L = 1, D = T = 64, pools of 64
    assert src.seq_len == 12 and src.vocab_size == 3 + 3 * 64 + 64
    rows = src.fact_eval().tokens
    assert rows.shape == (500, 13)
    assert (rows[:, 0] == BOS).all() and (rows[:, -1] == EOS).all()
    for j in range(3):  # name part j comes from its own pool of 64 token ids
        assert rows[:, 1 + j].min() >= 3 + 64 * j and rows[:, 1 + j].max() < 3 + 64 * (j + 1)
    values = rows[:, 4:12]
    assert values.min() >= 3 + 192 and values.max() < 3 + 192 + 64
    assert len({tuple(r) for r in rows[:, 1:4].tolist()}) == 500  # unique names
    meta = src.knowledge_meta()
    assert (meta["n0"], meta["K"], meta["C"], meta["D"], meta["L"], meta["T"]) == (
        64**3,
        8,
        1,
        64,
        1,
        64,
    )
    # docs/laws.md §3: 500·log2(262144/500) + 500·8·log2(64) + 8·64·log2(64/64) ≈ 28.5K bits
    assert meta["max_bits"] == pytest.approx(500 * math.log2(262144 / 500) + 24000)
    assert meta["max_bits"] == pytest.approx(28517.1, abs=0.1)
    assert src.tokens_per_epoch == 500 * 12
    assert set(meta["used_token_ids"]) == set(rows.unique().tolist())
    assert PAD not in meta["used_token_ids"]
    # one epoch of training rows: every person exactly once (equal exposures)
    seen = torch.cat([src.batch(s, 50, 12) for s in range(10)])
    assert sorted(seen[:, 1:4].tolist()) == sorted(rows[:, 1:4].tolist())


def test_biod_general_chunks_and_padding():
    src = build("biod", n_people=30, K=3, C=2, D=20, L=3, T=10, name_pool=4)
    assert src.seq_len == 4 + 3 * 2 * 3
    t = src.batch(0, 4, 30)  # longer than the format: padded with -100
    assert (t[:, 23:] == IGNORE_INDEX).all() and (t[:, :23] >= 0).all()
    x, y = inputs_targets(t)
    assert (x[:, 23:] == PAD).all() and (y[:, 22:] == IGNORE_INDEX).all()
    for k in range(3):  # each attribute: D distinct chunk strings of L tokens
        assert len({tuple(c) for c in src.chunks[k].tolist()}) == 20
    f = src.fact_eval()
    assert f.value_attr[0].tolist() == [-1] * 3 + [0] * 6 + [1] * 6 + [2] * 6 + [-1]
    assert f.first_chunk[0].int().tolist() == [0] * 3 + ([1] * 3 + [0] * 3) * 3 + [0]
    assert f.name_mask[0].int().tolist() == [1] * 3 + [0] * 19


def test_fact_losses_hand_computed():
    src = build("biod", n_people=30, K=3, C=2, D=20, L=3, T=10, name_pool=4)
    # loss of target j in row r: (r + 1) * (j + 1), rows 0..29, targets 0..21
    loss = (torch.arange(1, 31)[:, None] * torch.arange(1, 23)[None, :]).double()
    m = 15.5  # mean of r + 1
    assert src.fact_losses(loss)["p1"] == pytest.approx(m * (1 + 2 + 3))
    # value k covers targets 3 + 6k .. 8 + 6k (j + 1 = 4 + 6k .. 9 + 6k); first chunk 3 of them
    p2 = np.mean([sum(range(4 + 6 * k, 10 + 6 * k)) for k in range(3)]) * m
    p3 = np.mean([sum(range(4 + 6 * k, 7 + 6 * k)) for k in range(3)]) * m
    out = src.fact_losses(loss)
    assert (out["p2"], out["p3"]) == (pytest.approx(p2), pytest.approx(p3))
    # bioS: p2 sums the attributes of a person; with loss 1 per token it counts value tokens
    bios = build("bios", n_people=40)
    fb = bios.fact_eval()
    out = bios.fact_losses(torch.ones(fb.name_mask.shape))
    lens = [sum(len(bios.person(i)[a].split()) for a in ATTRIBUTES) for i in range(40)]
    assert out["p1"] == 3.0 and out["p2"] == pytest.approx(np.mean(lens))
    assert out["p3"] == pytest.approx(1.0)
    assert out["p2_by_attribute"]["birth_date"] == pytest.approx(3.0)


# ---- tokens --------------------------------------------------------------------------------


def test_token_file_round_trip_and_disjoint(token_file, tmp_path):
    src = make("tokens", token_path=token_file)
    assert src.vocab_size == 10_000 and src.n_train == 9_000  # read from the file
    for step in range(20):
        t = src.batch(step, 8, 31)
        assert (t[:, 1:] - t[:, :-1] == 1).all()  # windows of consecutive file tokens
        assert t.max() < 9_000  # training never touches the held-out tail
    e = src.eval_batch(8, 31)
    assert e.min() >= 9_000 and (e[:, 1:] - e[:, :-1] == 1).all()
    # uint16 with a separate eval file; file contents come back exactly
    tokens = np.random.default_rng(0).integers(0, 500, 4_000).astype(np.uint16)
    tokens.tofile(tmp_path / "a.bin")
    tokens[:100].tofile(tmp_path / "b.bin")
    src = build("tokens", path=str(tmp_path / "a.bin"), eval_path=str(tmp_path / "b.bin"))
    assert src.vocab_size == int(tokens.max()) + 1
    o = src.train_offsets(2, 4, 16)
    assert torch.equal(
        src.batch(2, 4, 16), torch.from_numpy(tokens[o[:, None] + np.arange(17)]).long()
    )
    assert torch.equal(src.eval_batch(1, 99)[0], torch.from_numpy(tokens[:100]).long())
    with pytest.raises(ValueError, match="data.params.vocab_size: token id"):
        build("tokens", path=str(tmp_path / "a.bin"), vocab_size=10).batch(0, 4, 16)
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="data.params.path: .* not a whole number"):
        build("tokens", path=str(tmp_path / "odd.bin"))
