"""Tiny random Llama (grouped-query attention) and GPT-NeoX (parallel residual, rotary on a quarter
of each head) written with `save_pretrained`, loaded through the same code path as hub names.
Weights are drawn with a large std so logits are far from zero and comparisons mean something."""
from __future__ import annotations

from pathlib import Path

from gpt2 import make_tiny_tokenizer


def make_tiny_llama(folder: Path, seed: int = 0, tie: bool = False, intermediate_size: int = 88) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    vocab, eot = make_tiny_tokenizer(folder)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=intermediate_size, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2, bos_token_id=eot,
                         eos_token_id=eot, pad_token_id=eot, tie_word_embeddings=tie)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    randomize_vectors(model)
    model.save_pretrained(folder)
    return folder


def randomize_vectors(model) -> None:
    """HF inits norms to 1 and biases to 0: draw them too, so their mapping is tested."""
    import torch

    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0.5 if n.endswith("weight") else 0.0, 0.2)


def make_tiny_neox(folder: Path, seed: int = 0, intermediate_size: int = 128) -> Path:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    folder = Path(folder)
    vocab, eot = make_tiny_tokenizer(folder)
    config = GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=intermediate_size, num_hidden_layers=2, num_attention_heads=2,
                           rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=64, initializer_range=0.2,
                           bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(config)
    randomize_vectors(model)
    model.save_pretrained(folder)
    return folder
