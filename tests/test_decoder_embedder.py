"""Decoder-LLM embedder training on tiny random Llama / Qwen2: ICL, LoRA, GradCache, distillation, DDP."""

import json
import os
import subprocess
from unittest import mock

import numpy as np
import pytest
import torch

from tiny_models import make_tiny_decoder, synthetic_task
from utils.retrieval import distributed as D
from utils.retrieval.embed import Embedder
from utils.retrieval.icl import with_icl_queries
from utils.io import read_jsonl, write_jsonl
from utils.retrieval.mining import to_flag_records
from utils.retrieval.train_embedder import (TrainConfig, backward_step, distill_loss, load_for_training, make_batch,
                                  train_embedder)

TEXTS = ["Adds the numerators", "x", "Confuses area with perimeter when finding the size of a shape", "7"]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    return {a: make_tiny_decoder(root / a, arch=a) for a in ("llama", "qwen2")}


def _records(icl_k: int | None = 2, n_neg: int = 3, seed: int = 0) -> list[dict]:
    pairs, mis, _ = synthetic_task()
    if icl_k is not None:
        pairs = with_icl_queries(pairs, pairs, mis, k=icl_k, seed=seed)
    rng = np.random.default_rng(seed)
    row = {m: i for i, m in enumerate(mis["item_id"])}
    negs = [rng.choice([j for j in range(len(mis)) if j != row[p[0]]], n_neg, replace=False).tolist()
            for p in pairs["positives"]]
    neg_scores = [rng.normal(size=n_neg).tolist() for _ in negs]
    return to_flag_records(pairs, mis, negs, neg_scores, rng.normal(size=len(pairs)) + 1.0)


@pytest.mark.parametrize("arch,icl_k", [("llama", 1), ("qwen2", 0)])
def test_icl_jsonl_lora_training_reloads_identically_and_pools_last_token(decoders, arch, icl_k, tmp_path):
    write_jsonl(tmp_path / "hn.jsonl", _records(icl_k)[::3])
    records = read_jsonl(tmp_path / "hn.jsonl")
    assert records[0]["query"].startswith("<instruct>") and records[0]["query"].endswith("\n<response>")
    assert records[0]["query"].count("<instruct>") == icl_k + 1
    assert make_batch(records[:2], 3, np.random.default_rng(0), True).queries[0] == records[0]["query"]
    cfg = TrainConfig(epochs=1, batch_size=4, n_negatives=3, lr=1e-2, max_query_length=384, max_passage_length=32,
                      log_every=1, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    seen = {}
    orig_save = Embedder.save

    def capture(self, out_dir):
        seen["emb"] = self.encode(TEXTS, batch_size=1, show_progress=False)
        return orig_save(self, out_dir)

    with mock.patch.object(Embedder, "save", autospec=True, side_effect=capture):
        log = train_embedder(records, decoders[arch], tmp_path / "emb", cfg, device="cpu", show_progress=False)
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    out = tmp_path / "emb"
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    e = Embedder(str(out), device="cpu")
    assert e.pooling == "last"
    single = e.encode(TEXTS, batch_size=1, show_progress=False)
    np.testing.assert_allclose(single, seen["emb"], atol=1e-5)  # the adapter reloads to the trained model
    base = Embedder(decoders[arch], device="cpu").encode(TEXTS, batch_size=1, show_progress=False)
    assert not np.allclose(single, base, atol=1e-4)  # and training changed it
    for side in ("right", "left"):
        e.tokenizer.padding_side = side
        np.testing.assert_allclose(e.encode(TEXTS, batch_size=4, show_progress=False), single, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_trainer_truncates_on_the_configured_side(decoders, side):
    emb = load_for_training(decoders["llama"], TrainConfig(truncation_side=side, max_query_length=12))
    text = _records(icl_k=2)[0]["query"]
    full = emb.tokenizer(text)["input_ids"]
    assert len(full) > 20
    ids = emb.tokenize([text], 12)["input_ids"][0].tolist()
    assert ids[-1] == emb.tokenizer.eos_token_id and len(ids) == 12  # last-token pooling reads the appended EOS
    kept = full[-11:] if side == "left" else full[:11]  # left: the query and its <response> slot survive
    assert ids[:-1] == kept


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _assert_same_grads(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=atol, rtol=1e-4, msg=n)


def test_grad_cache_gradients_equal_plain_step(decoders):
    records = _records(icl_k=None)[:6]
    cfg = TrainConfig(n_negatives=3, max_query_length=64, max_passage_length=32, distill_weight=0.5)
    emb = load_for_training(decoders["llama"], cfg, "cpu")  # full fine-tune, no dropout
    emb.model.train()
    batch = make_batch(records, 3, np.random.default_rng(0), True, with_teacher=True)
    plain_loss = backward_step(emb, batch, cfg)
    plain = _grads(emb.model)
    emb.model.zero_grad(set_to_none=True)
    cached_loss = backward_step(emb, batch, TrainConfig(**{**cfg.__dict__, "grad_cache_chunk": 4}))
    assert abs(float(plain_loss) - float(cached_loss)) < 1e-5
    _assert_same_grads(plain, _grads(emb.model))


def test_grad_cache_replays_dropout_masks(decoders):
    """With dropout on, GradCache's gradients are those of the loss it computed (RNG replayed per chunk)."""
    records = _records(icl_k=None)[:4]
    cfg = TrainConfig(n_negatives=2, max_query_length=64, max_passage_length=32, grad_cache_chunk=3,
                      lora={"r": 4, "alpha": 8, "dropout": 0.5})
    emb = load_for_training(decoders["qwen2"], cfg, "cpu")
    emb.model.train()
    batch = make_batch(records, 2, np.random.default_rng(0), True)
    torch.manual_seed(7)
    loss = backward_step(emb, batch, cfg)
    cached = _grads(emb.model)
    emb.model.zero_grad(set_to_none=True)
    # reference: the same chunks embedded with a graph, in the same order, from the same RNG state
    torch.manual_seed(7)
    chunked = [emb(emb.tokenize(t[i:i + 3], n)) for t, n in ((batch.queries, 64), (batch.passages, 32))
               for i in range(0, len(t), 3)]
    nq = -(-len(batch.queries) // 3)
    q, p = torch.cat(chunked[:nq]), torch.cat(chunked[nq:])
    ref_loss = torch.nn.functional.cross_entropy(q @ p.T / cfg.temperature, batch.targets)
    ref_loss.backward()
    assert abs(float(loss) - float(ref_loss)) < 1e-5
    _assert_same_grads(cached, _grads(emb.model))


def test_distill_loss_zero_iff_distributions_match():
    s = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, -1.0]])
    assert distill_loss(s, s).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(s / 0.1, s, temperature=0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(s, s.flip(-1)).item() > 0.1
    mask = torch.tensor([[True, True, False], [True, True, True]])
    other = s.clone()
    other[0, 2] = 9.0  # a masked-out entry changes nothing
    assert distill_loss(other, s, mask=mask).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_scores_follow_sampled_negatives():
    rec = {"query": "q", "pos": ["P"], "neg": ["a", "b", "c", "d"], "pos_ids": [0], "neg_ids": [1, 2, 3, 4],
           "pos_scores": [9.0], "neg_scores": [1.0, 2.0, 3.0, 4.0]}
    b = make_batch([rec], 2, np.random.default_rng(3), True, with_teacher=True)
    assert b.teacher[0][0] == 9.0
    assert [b.passages[c] for c in b.groups[0][1:]] == [{1.0: "a", 2.0: "b", 3.0: "c", 4.0: "d"}[s] for s in b.teacher[0][1:]]


def test_load_in_4bit_on_cpu_errors_clearly(decoders):
    cfg = TrainConfig(load_in_4bit=True, lora={"r": 4})
    with pytest.raises(RuntimeError, match="CUDA"):
        load_for_training(decoders["llama"], cfg, "cpu")
    with pytest.raises(ValueError, match="lora"):
        load_for_training(decoders["llama"], TrainConfig(load_in_4bit=True), "cpu")


def test_two_process_gloo_matches_one_process(decoders, tmp_path):
    """torchrun 2 processes (GradCache on, uneven passage shards) vs 1 process, same global batches."""
    records = _records(icl_k=None)[:12]
    write_jsonl(tmp_path / "hn.jsonl", records)
    base = dict(epochs=1, batch_size=4, n_negatives=3, lr=1e-2, max_query_length=64, max_passage_length=32,
                log_every=1, warmup_ratio=0.0, distill_weight=0.5, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    one = train_embedder(records, decoders["llama"], tmp_path / "one", base, device="cpu", show_progress=False)
    cfg = json.dumps({**base, "grad_cache_chunk": 3})
    proc = D.launch(["--records", tmp_path / "hn.jsonl", "--model", decoders["llama"], "--out", tmp_path / "two",
                     "--config", cfg, "--device", "cpu"], nproc=2, env={"OMP_NUM_THREADS": "1"},
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    saved = json.loads((tmp_path / "two" / "train_log.json").read_text())
    assert saved["world_size"] == 2 and len(saved["log"]) == len(one) == 3
    np.testing.assert_allclose([r["loss"] for r in saved["log"]], [r["loss"] for r in one], rtol=1e-4, atol=1e-5)
    a = Embedder(str(tmp_path / "one"), device="cpu").encode(TEXTS, show_progress=False)
    b = Embedder(str(tmp_path / "two"), device="cpu").encode(TEXTS, show_progress=False)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_shard_helpers_and_multi_device_encode_keep_order(decoders):
    assert D.shard_sizes(5, 2) == [3, 2] and D.shard_range(5, 1, 2) == slice(3, 5) and D.shard_sizes(1, 3) == [1, 0, 0]
    e = Embedder(decoders["qwen2"], device="cpu")
    ref = e.encode(TEXTS, show_progress=False)
    np.testing.assert_allclose(D.encode_multi_device(e, TEXTS, ["cpu", "cpu", "cpu"]), ref, atol=1e-5)
    assert D.world_size() == int(os.environ.get("WORLD_SIZE", "1"))


def test_compiled_layers_train_and_save_as_eager(decoders, tmp_path, light_compile):
    """train.compile: every layer compiled in place (parameter names unchanged), the same losses and adapter."""
    from utils.retrieval.embed import compile_blocks

    records = _records(icl_k=1)[:12]
    out, logs = {}, {}
    for compiled in (False, True):
        cfg = TrainConfig(epochs=1, batch_size=4, n_negatives=3, lr=1e-2, max_query_length=256, max_passage_length=32,
                          log_every=1, compile=compiled, lora={"r": 4, "alpha": 8, "dropout": 0.0})
        with mock.patch("utils.retrieval.train_embedder.compile_blocks", side_effect=compile_blocks) as spy:
            logs[compiled] = train_embedder(records, decoders["llama"], tmp_path / str(compiled), cfg, device="cpu",
                                            show_progress=False)
        assert spy.call_count == int(compiled)
        if compiled:  # the model's 2 decoder layers, compiled in place
            layers = spy.call_args.args[0].base_model.model.layers
            assert len(layers) == 2 and all(layer._compiled_call_impl is not None for layer in layers)
        out[compiled] = Embedder(str(tmp_path / str(compiled)), device="cpu").encode(TEXTS, show_progress=False)
    np.testing.assert_allclose([r["loss"] for r in logs[True]], [r["loss"] for r in logs[False]], rtol=1e-3)
    assert logs[False][-1]["loss"] != logs[False][0]["loss"]  # it trained
    np.testing.assert_allclose(out[True], out[False], atol=2e-3)  # same adapter keys and (nearly) values


def test_compile_blocks_finds_the_layer_list(decoders):
    from transformers import AutoModel

    from utils.retrieval.embed import compile_blocks

    model = AutoModel.from_pretrained(decoders["qwen2"])
    names = [n for n, _ in model.named_parameters()]
    assert compile_blocks(model) == model.config.num_hidden_layers == 2
    assert all(layer._compiled_call_impl is not None for layer in model.layers)
    assert [n for n, _ in model.named_parameters()] == names  # in place: state dicts and adapters save as before
    assert compile_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2))) == 0  # no repeated blocks: nothing compiled
