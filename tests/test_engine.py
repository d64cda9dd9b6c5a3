"""Chat engine on a real tiny int4 ONNX model with two real .onnx_adapter LoRAs (CPU)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import onnxruntime as ort
import onnxruntime_genai as og
import numpy as np
import pytest

import artifacts as lib
from engine.chat import ChatEngine, SamplingParams, Stats, load_hf_chat_template, render_chat_template
from tests.engine_fixture import engine_scratch  # noqa: F401  (session fixture)

MSG = [{"role": "user", "content": "Hello, how are you?"}]
GREEDY = SamplingParams(max_new_tokens=24)


@pytest.fixture(scope="module")
def engine(engine_scratch):
    return ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])


@pytest.fixture
def lib_copy(engine_scratch, tmp_path):
    """A private adapters folder the test may change."""
    d = tmp_path / "adapters"
    shutil.copytree(engine_scratch["adapters_dir"], d)
    return d


def plain_og_greedy(model_dir, adapter_file, prompt_ids, n):
    model = og.Model(str(model_dir))
    gp = og.GeneratorParams(model)
    gp.set_search_options(do_sample=False, max_length=len(prompt_ids) + n)
    g = og.Generator(model, gp)
    if adapter_file:
        ad = og.Adapters(model)
        ad.load(str(adapter_file), "x")
        g.set_active_adapter(ad, "x")
    g.append_tokens(prompt_ids)
    out = []
    tok = og.Tokenizer(model)
    stream = tok.create_stream()  # og 0.18: Tokenizer.decode(list) stops at the first invalid UTF-8
    eos = set(int(x) for x in tok.eos_token_ids)
    while not g.is_done():
        g.generate_next_token()
        t = int(g.get_next_tokens()[0])
        if t in eos:
            break
        out.append(stream.decode(t))
    return "".join(out)


# ------------------------------------------------------------------ library
def test_library_lists_bases_and_adapters(engine_scratch):
    bases = lib.list_bases(engine_scratch["models_dir"])
    assert [b.name for b in bases] == [engine_scratch["base_name"]] and bases[0].ok
    ads = lib.list_adapters(engine_scratch["adapters_dir"], bases[0])
    assert [(a.name, a.ok) for a in ads] == [("alpha", True), ("beta", True)]
    assert all(a.size > 0 and a.metadata["name"] == a.name for a in ads)


def test_delete_adapter_refuses_traversal(lib_copy):
    for bad in ["../adapters", "..", "a/b", "/etc", "", "x.tmp-1", ".hidden"]:
        with pytest.raises(lib.LibraryError):
            lib.delete_adapter(lib_copy, bad)
    with pytest.raises(lib.LibraryError):
        lib.delete_adapter(lib_copy, "nope")
    lib.delete_adapter(lib_copy, "beta")
    assert sorted(os.listdir(lib_copy)) == ["alpha"]


# ------------------------------------------------------------------ generation
def test_variants_and_provider(engine):
    assert engine.variants() == ["base", "alpha", "beta"]
    assert engine.refused() == []
    assert engine.provider == "cpu"


def test_base_and_adapters_differ(engine):
    texts = {v: engine.generate(MSG, v, GREEDY)[0] for v in engine.variants()}
    print("greedy texts:", texts)
    assert all(texts.values())
    assert len(set(texts.values())) == 3


def test_greedy_equals_plain_og_loop(engine, engine_scratch):
    ids, _ = engine.encode(MSG, GREEDY.max_new_tokens)
    for v in engine.variants():
        f = None if v == "base" else engine_scratch["adapters_dir"] / v / "adapter.onnx_adapter"
        want = plain_og_greedy(engine_scratch["model_dir"], f, ids, GREEDY.max_new_tokens)
        got, st = engine.generate(MSG, v, GREEDY)
        assert got == want, v
        assert st.finished and st.variant == v and st.prompt_tokens == len(ids)


def test_stream_is_incremental(engine):
    frames = list(engine.stream(MSG, "alpha", SamplingParams(max_new_tokens=10)))
    texts = [t for t, _ in frames]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    last = frames[-1][1]
    assert isinstance(last, Stats) and last.finished and 0 < last.tokens <= 10
    assert [s.tokens for _, s in frames[:-1]] == list(range(1, len(frames)))
    assert last.ttft_s > 0 and last.seconds >= last.ttft_s


def test_switch_without_reload(engine):
    model_id, adapters_id = id(engine.backend.model), id(engine.backend.adapters)
    ref = {v: engine.generate(MSG, v, GREEDY)[0] for v in engine.variants()}
    one = SamplingParams(max_new_tokens=1)
    times = {}
    for v in ["alpha", "beta", "base", "beta", "alpha"] * 4:
        t0 = time.perf_counter()
        engine.generate(MSG, v, one)
        times.setdefault(v, []).append(time.perf_counter() - t0)
    for v in ["beta", "base", "alpha", "alpha", "beta"]:
        assert engine.generate(MSG, v, GREEDY)[0] == ref[v]
    assert id(engine.backend.model) == model_id and id(engine.backend.adapters) == adapters_id
    med = {v: sorted(t)[len(t) // 2] * 1e3 for v, t in times.items()}
    print("request with 1 new token incl. generator + adapter switch, median ms:",
          {k: round(x, 3) for k, x in med.items()})
    # generator creation + set_active_adapter alone
    l = engine.registry._loaded["alpha"]
    t0 = time.perf_counter()
    for _ in range(50):
        g = og.Generator(engine.backend.model, engine.backend.params(10, GREEDY, 1))
        g.set_active_adapter(engine.backend.adapters, l.key)
        del g
    print(f"og.Generator + set_active_adapter: {(time.perf_counter() - t0) / 50 * 1e3:.3f} ms")


def test_threads_mixed_variants(engine):
    variants = engine.variants()
    msgs = [[{"role": "user", "content": f"Tell me about trip number {i}"}] for i in range(4)]
    jobs = [(variants[i % 3], msgs[i % 4]) for i in range(16)]
    alone = {(v, m[0]["content"]): engine.generate(m, v, GREEDY)[0] for v, m in jobs}
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda j: engine.generate(j[1], j[0], GREEDY)[0], jobs))
    for (v, m), t in zip(jobs, got):
        assert t == alone[(v, m[0]["content"])], v


def test_compare_equals_single_runs(engine):
    p = SamplingParams(max_new_tokens=20)
    a, b = engine.generate(MSG, "base", p)[0], engine.generate(MSG, "beta", p)[0]
    frames = list(engine.compare(MSG, "base", "beta", p))
    ta, tb, sa, sb = frames[-1]
    assert (ta, tb) == (a, b) and sa.finished and sb.finished
    assert (sa.variant, sb.variant) == ("base", "beta")
    # sampled: same seed on both sides -> same texts as single runs with that seed
    ps = SamplingParams(temperature=0.9, top_p=0.95, top_k=40, seed=7, max_new_tokens=20)
    ta, tb, _, _ = list(engine.compare(MSG, "alpha", "alpha", ps))[-1]
    assert ta == tb == engine.generate(MSG, "alpha", ps)[0]


def test_compare_is_one_batch_of_two_with_a_pair_adapter(engine):
    """Rows layout: compare runs both variants as ONE og generator of batch 2 with a stacked pair
    adapter; alpha (r8) and beta (r4) differ in rank, so this also covers the zero padding."""
    assert engine.base.rows and engine.compare_batched
    p = SamplingParams(max_new_tokens=40)
    alone = {v: engine.generate(MSG, v, p)[0] for v in ("base", "alpha", "beta")}
    assert len(set(alone.values())) == 3
    made = []
    real = og.Generator

    class Spy(real):  # counts generators and their batch size
        def append_tokens(self, ids):
            made.append(np.asarray(ids).shape)
            return super().append_tokens(ids)

    og.Generator = Spy
    try:
        for a, b in (("alpha", "beta"), ("beta", "alpha"), ("base", "beta"), ("alpha", "base")):
            made.clear()
            frames = list(engine.compare(MSG, a, b, p))
            ta, tb, sa, sb = frames[-1]
            assert (ta, tb) == (alone[a], alone[b]), (a, b)
            assert (sa.variant, sb.variant) == (a, b) and sa.finished and sb.finished
            assert sa.tokens > 0 and sb.tokens > 0
            assert len(made) == 1 and made[0][0] == 2, made  # one generator, two rows
            # the texts grow token by token on both sides
            assert len(frames) > 5 and frames[0][0] != ta
    finally:
        og.Generator = real
    keys = list(engine.registry._pairs)
    assert len(keys) == 4 == len({engine.registry._pairs[k].key for k in keys})
    list(engine.compare(MSG, "alpha", "beta", p))  # reused, not made again
    assert list(engine.registry._pairs)[-1] == keys[0] and len(engine.registry._pairs) == 4
    # sampled: one seed for the batch, reproducible
    ps = SamplingParams(temperature=0.9, top_p=0.95, top_k=40, seed=11, max_new_tokens=20)
    assert list(engine.compare(MSG, "alpha", "beta", ps))[-1][:2] == list(engine.compare(MSG, "alpha", "beta", ps))[-1][:2]


def test_compare_pairs_bounded_and_dropped_with_their_adapter(engine_scratch, lib_copy, monkeypatch, tmp_path):
    """Pairs are bounded, dropped with a replaced side, and leave no file: each is deleted once loaded (a
    killed server left one in /tmp per compare)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    eng = ChatEngine(engine_scratch["model_dir"], lib_copy)
    monkeypatch.setattr(eng.registry, "MAX_PAIRS", 2)
    p = SamplingParams(max_new_tokens=8)
    alone = {v: list(eng.stream(MSG, v, p))[-1][0] for v in ("alpha", "beta")}
    for a, b in (("alpha", "beta"), ("beta", "alpha"), ("base", "alpha")):
        list(eng.compare(MSG, a, b, p))
    assert len(eng.registry._pairs) == 2
    assert not list(tmp.iterdir()), "no pair file or folder is left"
    ta, tb, _, _ = list(eng.compare(MSG, "beta", "alpha", p))[-1]  # a loaded pair, its file long gone
    assert (ta, tb) == (alone["beta"], alone["alpha"])
    # replacing beta on disk makes every pair with the old beta stale: dropped at the next refresh
    shutil.copy2(lib_copy / "alpha" / "adapter.onnx_adapter", lib_copy / "beta" / "adapter.onnx_adapter")
    os.utime(lib_copy / "beta" / "metadata.json")
    eng.refresh()
    assert all(eng.registry._loaded["beta"].key not in k for k in eng.registry._pairs)
    assert [k for k in eng.registry._pairs] == [(None, eng.registry._loaded["alpha"].key)]
    ta, tb, _, _ = list(eng.compare(MSG, "alpha", "beta", p))[-1]
    assert ta == tb  # beta now holds alpha's weights: the new pair uses them
    eng.close()
    assert not list(tmp.iterdir())


def test_long_prompts_are_read_in_pieces_on_the_cpu(engine_scratch, monkeypatch):
    """onnxruntime-genai holds Python's lock for a whole append_tokens call, so on the CPU a prompt is read in
    pieces of STUDIO_PREFILL_CHUNK tokens (one long prompt froze every other request of the server). Same
    tokens as reading it at once; a compare of a long prompt runs its two sides interleaved, each in pieces
    (a batch of 2 takes one append only), and says so."""
    long_msg = [{"role": "user", "content": " ".join(["Tell me about the trams and tiles of Lisbon."] * 12)}]
    p = SamplingParams(max_new_tokens=24)
    monkeypatch.setenv("STUDIO_PREFILL_CHUNK", "0")
    at_once = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    want = {v: at_once.generate(long_msg, v, p)[0] for v in ("base", "alpha", "beta")}
    n = len(at_once.encode(long_msg, p.max_new_tokens)[0])
    at_once.close()
    monkeypatch.setenv("STUDIO_PREFILL_CHUNK", "16")
    eng = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    assert eng.provider == "cpu" and eng.backend.prefill_chunk == 16 and n > 64, n
    calls = []
    real = og.Generator

    class Spy(real):
        def append_tokens(self, ids):
            calls.append(np.asarray(ids).shape)
            return super().append_tokens(ids)

    monkeypatch.setattr(og, "Generator", Spy)
    for v in ("base", "alpha"):
        calls.clear()
        assert eng.generate(long_msg, v, p)[0] == want[v], v
        assert calls == [(16,)] * (n // 16) + ([(n % 16,)] if n % 16 else []), calls
    calls.clear()
    ta, tb, sa, sb = list(eng.compare(long_msg, "alpha", "beta", p))[-1]
    assert (ta, tb) == (want["alpha"], want["beta"])
    assert all(len(c) == 1 and c[0] <= 16 for c in calls) and sum(c[0] for c in calls) == 2 * n, calls
    assert "read in pieces" in sb.note, sb.note
    calls.clear()  # a short prompt is still one batch of 2
    list(eng.compare(MSG, "alpha", "beta", p))
    assert len(calls) == 1 and calls[0][0] == 2, calls
    eng.close()
    # the default: pieces sized by time (STUDIO_PREFILL_MS), within [CHUNK_MIN, CHUNK_MAX], the same tokens
    from engine.og_backend import CHUNK_AUTO, CHUNK_MAX, CHUNK_MIN
    monkeypatch.delenv("STUDIO_PREFILL_CHUNK")
    monkeypatch.setenv("STUDIO_PREFILL_MS", "1")  # (the scratch model is fast: small pieces even so)
    eng = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    assert eng.backend.prefill_chunk == CHUNK_AUTO
    for v in ("base", "alpha", "base"):
        calls.clear()
        assert eng.generate(long_msg, v, p)[0] == want[v], v
        sizes = [c[0] for c in calls]
        assert sum(sizes) == n and len(sizes) >= 2, sizes
        assert all(CHUNK_MIN <= k <= CHUNK_MAX for k in sizes[:-1]), sizes
    assert eng.backend.compare_chunk() >= 2 * CHUNK_MIN
    eng.close()


def test_a_cancelled_request_stops_between_pieces_of_its_prompt(engine_scratch, monkeypatch):
    """A reader that goes away while a long prompt is read (the CPU reads it in pieces) stops the request
    within one piece: before, the engine thread read the whole prompt, whoever was left to read the answer."""
    monkeypatch.setenv("STUDIO_PREFILL_CHUNK", "8")
    eng = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    long_msg = [{"role": "user", "content": " ".join(["Tell me about the trams and tiles of Lisbon."] * 12)}]
    n = len(eng.encode(long_msg, 16)[0])
    calls, live = [], []
    real = og.Generator

    class Spy(real):
        def append_tokens(self, ids):
            calls.append(len(ids))
            if len(calls) == 2:
                live[0].cancel()  # the reader goes away while the prompt is read
            return super().append_tokens(ids)

    monkeypatch.setattr(og, "Generator", Spy)
    import engine.live as el
    real_init = el.Live.__init__

    def hold(self, frames, name="studio-decode"):  # the request is known before its thread reads anything
        live.append(self)
        self._stop = False
        real_init(self, frames, name)
    monkeypatch.setattr(el.Live, "__init__", hold)
    lv = eng.start(long_msg, "alpha", SamplingParams(max_new_tokens=16))
    assert lv.join(30)
    assert n > 8 * 4 and calls == [8, 8], (n, calls)
    assert lv.produced_frames <= 1, "no token after the cancel (at most the closing frame)"
    calls.clear()
    text, st = eng.generate(long_msg, "alpha", SamplingParams(max_new_tokens=16))  # the engine serves on
    assert text and sum(calls) == n
    eng.close()


def test_compare_interleaved_when_asked(engine_scratch, monkeypatch):
    """STUDIO_COMPARE=interleave (and bases built before the rows layout) step two generators in turn:
    same answers."""
    monkeypatch.setenv("STUDIO_COMPARE", "interleave")
    eng = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    assert not eng.compare_batched and "interleave" in eng.compare_note
    p = SamplingParams(max_new_tokens=30)
    ta, tb, _, _ = list(eng.compare(MSG, "alpha", "base", p))[-1]
    assert (ta, tb) == (eng.generate(MSG, "alpha", p)[0], eng.generate(MSG, "base", p)[0])
    assert not eng.registry._pairs


def test_pair_adapter_file_stacks_rows(engine_scratch, tmp_path):
    ad = engine_scratch["adapters_dir"]
    a = lib.read_adapter_arrays(ad / "alpha" / "adapter.onnx_adapter")
    b = lib.read_adapter_arrays(ad / "beta" / "adapter.onnx_adapter")
    out = tmp_path / "p.onnx_adapter"
    lib.write_pair_adapter(ad / "alpha" / "adapter.onnx_adapter", None, out)
    pair = lib.read_adapter_arrays(out)
    for k, v in a.items():
        assert v.shape[0] == 1 and pair[k].shape == (2, *v.shape[1:])
        assert np.array_equal(pair[k][0], v[0]) and not pair[k][1].any()
    lib.write_pair_adapter(ad / "alpha" / "adapter.onnx_adapter", ad / "beta" / "adapter.onnx_adapter", out)
    pair = lib.read_adapter_arrays(out)
    k = next(k for k in a if ".lora_A." in k)
    assert a[k].shape[2] == 8 and b[k].shape[2] == 4 and pair[k].shape[2] == 8
    assert np.array_equal(pair[k][1, :, :4], b[k][0]) and not pair[k][1, :, 4:].any()
    with pytest.raises(ValueError, match="at least one"):
        lib.write_pair_adapter(None, None, out)


def test_sampling_seed_reproducible(engine):
    p = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, seed=123, max_new_tokens=24)
    a = engine.generate(MSG, "beta", p)[0]
    assert a == engine.generate(MSG, "beta", p)[0]
    others = {engine.generate(MSG, "beta", SamplingParams(temperature=1.0, seed=s,
                                                          max_new_tokens=24))[0] for s in range(5)}
    assert len(others) > 1
    # the repetition penalty reaches og: it changes greedy output on a random model
    plain = engine.generate(MSG, "base", SamplingParams(max_new_tokens=60))[0]
    assert engine.generate(MSG, "base", SamplingParams(max_new_tokens=60,
                                                       repetition_penalty=1.8))[0] != plain


def test_errors(engine):
    with pytest.raises(ValueError, match="known: base, alpha, beta"):
        engine.stream(MSG, "gamma")
    for empty in ([], [{"role": "user", "content": "   "}], ""):
        with pytest.raises(ValueError, match="empty prompt"):
            engine.generate(empty, "base")
    with pytest.raises(ValueError):
        engine.generate(MSG, "base", SamplingParams(max_new_tokens=0))


def test_long_prompt_cut_from_left(engine):
    long = [{"role": "user", "content": "hello world " * 500}]
    text, st = engine.generate(long, "alpha", SamplingParams(max_new_tokens=16))
    assert "cut from the left" in st.note
    assert st.prompt_tokens + st.tokens <= engine.context_length and st.tokens > 0


def test_fallback_chat_template_matches_og(engine, engine_scratch):
    tmpl = load_hf_chat_template(engine_scratch["model_dir"])
    assert tmpl
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Where to?"}]
    assert render_chat_template(tmpl, msgs) == engine.render(msgs)
    assert render_chat_template(None, msgs) == engine.render(msgs)


# ------------------------------------------------------------------ refusals and refresh
def _corrupt(adir):
    shutil.copytree(adir / "alpha", adir / "wrongfp")
    m = json.loads((adir / "wrongfp" / "metadata.json").read_text())
    m["base_fingerprint"] = "0" * 64
    (adir / "wrongfp" / "metadata.json").write_text(json.dumps(m))
    shutil.copytree(adir / "beta", adir / "truncated")
    f = adir / "truncated" / "adapter.onnx_adapter"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    shutil.copytree(adir / "beta", adir / "badmeta")
    (adir / "badmeta" / "metadata.json").write_text("{not json")
    shutil.copytree(adir / "beta", adir / "nofile")
    (adir / "nofile" / "adapter.onnx_adapter").unlink()
    shutil.copytree(adir / "beta", adir / "foreign")
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1); fmt.set_model_version(1)
    fmt.set_parameters({"model.layers.9.mlp.lora_A.weight":
                        ort.OrtValue.ortvalue_from_numpy(np.zeros((128, 4), np.float32))})
    fmt.export_adapter(str(adir / "foreign" / "adapter.onnx_adapter"))
    (adir / "half.tmp-123").mkdir()  # publishing in progress: ignored


def test_refused_adapters_listed_others_serve(engine_scratch, lib_copy):
    _corrupt(lib_copy)
    e = ChatEngine(engine_scratch["model_dir"], lib_copy)
    reasons = dict(e.refused())
    print("refused:", reasons)
    assert set(reasons) == {"wrongfp", "truncated", "badmeta", "nofile", "foreign"}
    assert "another base" in reasons["wrongfp"]
    assert "truncated" in reasons["truncated"]
    assert "corrupt" in reasons["badmeta"]
    assert "missing" in reasons["nofile"]
    assert "not LoRA inputs" in reasons["foreign"]
    assert e.variants() == ["base", "alpha", "beta"]
    with pytest.raises(ValueError, match="refused"):
        e.stream(MSG, "wrongfp")
    ref = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    for v in e.variants():
        assert e.generate(MSG, v, GREEDY)[0] == ref.generate(MSG, v, GREEDY)[0]
    infos = {a.name: a for a in lib.list_adapters(lib_copy, engine_scratch["model_dir"])}
    assert {n for n, a in infos.items() if not a.ok} == set(reasons)


def test_refresh_publish_delete_replace(engine_scratch, lib_copy):
    beta_text = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"]) \
        .generate(MSG, "beta", GREEDY)[0]
    staged = lib_copy.parent / "staged-beta"
    shutil.move(lib_copy / "beta", staged)
    e = ChatEngine(engine_scratch["model_dir"], lib_copy)
    model_id = id(e.backend.model)
    assert e.variants() == ["base", "alpha"]
    t0 = time.perf_counter()
    for _ in range(100):
        assert e.refresh() == {"added": [], "removed": [], "refused": []}
    print(f"refresh with nothing new: {(time.perf_counter() - t0) / 100 * 1e6:.0f} us")
    # atomic publish: tmp dir then os.replace
    tmp = lib_copy / f"gamma.tmp-{os.getpid()}"
    shutil.copytree(staged, tmp)
    assert e.refresh()["added"] == []
    os.replace(tmp, lib_copy / "gamma")
    assert e.refresh()["added"] == ["gamma"]
    assert e.variants() == ["base", "alpha", "gamma"]
    assert e.generate(MSG, "gamma", GREEDY)[0] == beta_text

    # delete while a request on it is streaming: the request finishes, then it is unloaded
    it = e.stream(MSG, "alpha", SamplingParams(max_new_tokens=20))
    first = next(it)
    lib.delete_adapter(lib_copy, "alpha")
    assert e.refresh()["removed"] == ["alpha"]
    assert e.variants() == ["base", "gamma"]
    with pytest.raises(ValueError):
        e.stream(MSG, "alpha")
    assert len(e.registry._retired) == 1
    rest = list(it)
    assert rest[-1][1].finished and rest[-1][0].startswith(first[0])
    assert e.registry._retired == []

    # replaced in place (new content under the same name) -> reloaded
    shutil.rmtree(lib_copy / "gamma")
    shutil.copytree(engine_scratch["adapters_dir"] / "alpha", lib_copy / "gamma")
    r = e.refresh()
    assert r["added"] == ["gamma"] and r["removed"] == ["gamma"]
    alpha_text = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"]) \
        .generate(MSG, "alpha", GREEDY)[0]
    assert e.generate(MSG, "gamma", GREEDY)[0] == alpha_text
    assert id(e.backend.model) == model_id


def test_compare_falls_back_to_interleaving_when_the_batch_fails(engine_scratch, monkeypatch):
    eng = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"])
    assert eng.compare_batched

    def broken(*a, **k):
        raise RuntimeError("no batch of 2 here")
        yield  # pragma: no cover
    monkeypatch.setattr(eng, "_run_pair", broken)
    p = SamplingParams(max_new_tokens=12)
    ta, tb, sa, sb = list(eng.compare(MSG, "alpha", "beta", p))[-1]
    assert (ta, tb) == (eng.generate(MSG, "alpha", p)[0], eng.generate(MSG, "beta", p)[0])
    # for that request only: its stats say why, the engine's mode is unchanged for every later request
    assert "no batch of 2 here" in sb.note and eng.compare_batched and not eng.compare_note
    monkeypatch.undo()
    calls = []
    run_pair = eng._run_pair
    monkeypatch.setattr(eng, "_run_pair", lambda *a, **k: calls.append(1) or run_pair(*a, **k))
    ta2, tb2, _, sb2 = list(eng.compare(MSG, "alpha", "beta", p))[-1]
    assert calls == [1] and (ta2, tb2) == (ta, tb) and "interleaved" not in sb2.note
