"""The five stock pipelines with tiny random-init text encoders and offline tokenizers built in memory
(tokenizers from a few-letter vocabulary, no downloads), tiny VAEs and tiny transformers, so that each
pipeline's own ``encode_prompt`` and VAE run end to end on the CPU in milliseconds."""

from __future__ import annotations

import inspect

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from apexgen.backbones.registry import pipeline_class
from tests.backbones.tiny import TEXT_DIM, tiny_backbone, tiny_vae

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CLIP_TOKENS = 16  # the CLIP tokenizers' model_max_length (77 in the real ones)
# Text tokens asked of each pipeline: the tokenizers here make one token per letter, and Qwen-Image and
# Z-Image wrap prompts in chat templates, so those need more room for captions to keep their lengths.
MAX_SEQUENCE_LENGTH = {"sd3": 12, "flux": 12, "qwen_image": 256, "sana": 12, "z_image": 64}
SIDE = 32  # image side in pixels; the tiny VAEs halve it (16×16 latents)
# A chat template in the shape of Qwen3's, for Z-Image's apply_chat_template (the real one is long).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def clip_tokenizer() -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in LETTERS + ".,!":
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_TOKENS)


def t5_tokenizer() -> T5TokenizerFast:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(c, -2.0) for c in LETTERS] + [("▁" + c, -1.5) for c in LETTERS]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE over single bytes, with Qwen's chat special tokens."""
    tokenizer = Qwen2Tokenizer(vocab={c: i for i, c in enumerate(ByteLevel.alphabet())}, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def gemma_tokenizer() -> GemmaTokenizer:
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for character in LETTERS + " .,▁":
        vocab.setdefault(character, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True)


def clip_encoder(cls, hidden: int, projection: int):
    config = CLIPTextConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=CLIP_TOKENS,
        projection_dim=projection,
    )
    return cls(config)


def t5_encoder() -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=1, num_heads=2))


def qwen_vl_encoder() -> Qwen2_5_VLForConditionalGeneration:
    text = dict(
        vocab_size=300,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]},
    )
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=TEXT_DIM)
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))


def gemma_encoder() -> Gemma2Model:
    config = Gemma2Config(
        vocab_size=64,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    return Gemma2Model(config)


def qwen3_encoder() -> Qwen3Model:
    config = Qwen3Config(
        vocab_size=300,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,  # Z-Image takes the second-to-last hidden states
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    return Qwen3Model(config)


def text_components(name: str) -> dict:
    """Text encoders and tokenizers whose outputs fit the tiny transformers (TEXT_DIM-wide tokens, pooled)."""
    if name == "sd3":  # two CLIPs (hidden 16 + 16 = the T5 width once padded; pooled 16 + 16) and a T5
        return dict(
            text_encoder=clip_encoder(CLIPTextModelWithProjection, 16, 16),
            tokenizer=clip_tokenizer(),
            text_encoder_2=clip_encoder(CLIPTextModelWithProjection, 16, 16),
            tokenizer_2=clip_tokenizer(),
            text_encoder_3=t5_encoder(),
            tokenizer_3=t5_tokenizer(),
        )
    if name == "flux":  # pooled CLIP, T5 tokens
        return dict(
            text_encoder=clip_encoder(CLIPTextModel, TEXT_DIM, TEXT_DIM),
            tokenizer=clip_tokenizer(),
            text_encoder_2=t5_encoder(),
            tokenizer_2=t5_tokenizer(),
        )
    if name == "qwen_image":
        return dict(text_encoder=qwen_vl_encoder(), tokenizer=qwen_tokenizer())
    if name == "sana":
        return dict(text_encoder=gemma_encoder(), tokenizer=gemma_tokenizer())
    if name == "z_image":
        return dict(text_encoder=qwen3_encoder(), tokenizer=qwen_tokenizer())
    raise ValueError(name)


def tiny_pipeline(name: str, seed: int = 0):
    """The stock pipeline of backbone ``name``, every component tiny and random (seeded)."""
    cls = pipeline_class(name)
    parameters = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    components = dict.fromkeys(parameters)
    torch.manual_seed(seed)
    components.update(text_components(name), vae=tiny_vae(name), scheduler=FlowMatchEulerDiscreteScheduler())
    components["transformer"] = tiny_backbone(name, seed).transformer
    pipeline = cls(**components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
