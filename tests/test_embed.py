import numpy as np
import pytest
import torch

from tiny_models import make_tiny_decoder
from utils.retrieval import embed as embed_module
from utils.retrieval.embed import Embedder, cached_encode, plan_batches, pool, resolve_model

TEXTS = ["Adds the numerators and the denominators", "x", "Confuses area with perimeter when finding the size of a shape"]


@pytest.fixture(scope="module")
def minilm():
    return Embedder(device="cpu")


def test_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model(None), device="cpu")
    ours = minilm.encode(TEXTS * 3, batch_size=4, show_progress=False)
    ref = st.encode(TEXTS * 3, batch_size=4, normalize_embeddings=True)
    assert minilm.pooling == "mean" and minilm.normalize and minilm.max_length == 256
    assert np.abs(ours - ref).max() < 1e-5


def test_order_is_restored_after_length_sorting(minilm):
    a = minilm.encode(TEXTS, batch_size=1, show_progress=False)
    b = minilm.encode(TEXTS[::-1], batch_size=2, show_progress=False)[::-1]
    assert np.allclose(a, b, atol=1e-5)


def test_plan_batches_by_token_budget():
    # sorted lengths, budget 20 padded tokens: 2 x 10, then 2 x 8, then the three 3s and the 1 (4 x 3 = 12)
    assert plan_batches(np.array([10, 8, 8, 3, 3, 3, 1]), 20) == [(0, 2), (2, 4), (4, 7)]
    assert plan_batches(np.array([50, 5]), 20) == [(0, 1), (1, 2)]  # too long for the budget: alone
    assert plan_batches(np.array([], dtype=int), 20) == []


def test_token_budget_and_upload_groups_do_not_change_embeddings(minilm, monkeypatch):
    """Many small batches over several device copies == one batch; full rows skip the mask."""
    texts = TEXTS * 4 + ["two words", "too words"]  # the last two tokenize to equal lengths
    one = minilm.encode(texts, batch_size=64, show_progress=False)
    monkeypatch.setattr(embed_module, "UPLOAD_TOKENS", 24)
    calls = []
    forward = minilm.forward
    monkeypatch.setattr(minilm, "forward", lambda b, padded=True: calls.append((tuple(b["input_ids"].shape), padded))
                        or forward(b, padded))
    many = minilm.encode(texts, batch_size=1, max_tokens=12, show_progress=False)
    assert len(calls) > 4 and max(n * w for (n, w), _ in calls) <= max(12, max(w for (_, w), _ in calls))
    assert any(not padded for _, padded in calls) and any(padded for _, padded in calls)
    assert np.abs(one - many).max() < 1e-5


def test_pool_last_token_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").squeeze(-1).tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").squeeze(-1).tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").squeeze(-1).tolist() == [0.5, 5.5]
    assert pool(hidden, right, "cls").squeeze(-1).tolist() == [0.0, 4.0]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_decoder_last_token_same_under_both_paddings(tmp_path, arch):
    path = make_tiny_decoder(tmp_path / arch, arch=arch)
    emb = Embedder(path, device="cpu")
    assert emb.pooling == "last" and emb.append_eos
    emb.tokenizer.padding_side = "right"
    right = emb.encode(TEXTS, batch_size=3, show_progress=False)
    emb.tokenizer.padding_side = "left"
    left = emb.encode(TEXTS, batch_size=3, show_progress=False)
    single = np.stack([emb.encode([t], show_progress=False)[0] for t in TEXTS])
    assert np.allclose(right, single, atol=1e-4) and np.allclose(left, single, atol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_decoder_gets_a_ready_causal_mask_with_the_same_embeddings(tmp_path, arch):
    """SDPA decoders get a 4-D causal+padding mask (no host sync on the mask in transformers), none when
    nothing is padded, and embed exactly as with the 2-D mask transformers turns into its own."""
    from utils.retrieval.embed import causal_padding_mask

    m = causal_padding_mask(torch.tensor([[0, 1, 1], [1, 1, 0]]))[:, 0].int().tolist()
    assert m == [[[1, 0, 0], [0, 1, 0], [0, 1, 1]], [[1, 0, 0], [1, 1, 0], [1, 1, 1]]]  # by hand; pads see themselves
    emb = Embedder(make_tiny_decoder(tmp_path / arch, arch=arch), device="cpu")
    assert emb.causal_4d and not emb.mask_4d
    seen = []
    emb.model.register_forward_pre_hook(lambda mod, a, kw: seen.append(kw.get("attention_mask")), with_kwargs=True)
    for side in ("left", "right"):
        emb.tokenizer.padding_side = side
        batch = emb.tokenize(TEXTS)
        with torch.no_grad():
            ours = emb(batch)
            emb.causal_4d = False  # transformers builds the mask from the 2-D one
            ref = emb(batch)
            emb.causal_4d = True
            full = emb(emb.tokenize(["one two", "one two"]))  # same length: unpadded
        assert seen[0].shape == (len(TEXTS), 1, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
        assert seen[1].ndim == 2 and seen[2] is None and full.shape == (2, ours.shape[1])
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        seen.clear()


def test_save_reload_and_sentence_transformers_compat(tmp_path, minilm):
    from sentence_transformers import SentenceTransformer

    out = minilm.save(tmp_path / "m")
    again = Embedder(out, device="cpu")
    assert again.settings() == minilm.settings()
    assert np.allclose(again.encode(TEXTS, show_progress=False), minilm.encode(TEXTS, show_progress=False), atol=1e-6)
    st = SentenceTransformer(str(out), device="cpu")
    assert np.allclose(st.encode(TEXTS), minilm.encode(TEXTS, show_progress=False), atol=1e-5)


def test_cache_hits_and_keys_on_text(tmp_path, minilm, monkeypatch):
    a = cached_encode(minilm, TEXTS, tmp_path, show_progress=False)
    assert len(list(tmp_path.glob("emb_*.npy"))) == 1
    monkeypatch.setattr(minilm, "encode_passages", lambda *a, **k: pytest.fail("cache miss"))
    assert np.array_equal(cached_encode(minilm, TEXTS, tmp_path), a)
    monkeypatch.undo()
    cached_encode(minilm, TEXTS[:2], tmp_path, show_progress=False)
    assert len(list(tmp_path.glob("emb_*.npy"))) == 2


def test_cache_keys_on_the_truncation_side(tmp_path, minilm, monkeypatch):
    # texts cut on the other side are other embeddings: a cache made before train.truncation_side changed must miss
    right = minilm.fingerprint()
    monkeypatch.setattr(minilm.tokenizer, "truncation_side", "left")
    assert minilm.fingerprint() != right
    monkeypatch.setattr(minilm.tokenizer, "truncation_side", "right")
    assert minilm.fingerprint() == right
