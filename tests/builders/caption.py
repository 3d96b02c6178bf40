"""Random-weight captioners of the real architectures, written as hub-layout folders (tests, benchmarks).

Each builder writes `config.json` + safetensors of the real transformers class and
a real processor (real image-processor class, a byte-level BPE tokenizer trained
here with the `tokenizers` library, the model family's special tokens and chat
format) so the captioner loads it through its normal `from_pretrained` path.
`full_size=True` uses the published model dimensions (model cards / hub
`config.json`) for timing; the tokenizer stays tiny, which does not change the
cost per generated token much (the embedding matrix keeps the real vocabulary size).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

# A few hundred merges are enough for a tokenizer that round-trips any text (byte-level BPE).
_CORPUS_WORDS = (
    "a photo of the image shows person sitting on rock near tree bridge over water under blue sky "
    "with red green dog cat describe this picture in detail paragraph what is shown"
).split()
_TINY_VOCAB = 320
# Printable ASCII in byte-level notation (space is "Ġ", newline "Ċ"): random weights then always decode
# to readable text, never to half a UTF-8 character.
_PRINTABLE = [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ"]


def _tokenizer(
    special: dict[str, str],
    extra: dict[str, str] | None = None,
    extra_tokens: tuple[str, ...] = (),
    prepend_bos: bool = False,
):
    """A byte-level BPE tokenizer trained on a tiny corpus, with the family's bos/eos/pad and named tokens.

    `prepend_bos` adds the bos token in front of every text, as OPT's tokenizer does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    extra = extra or {}
    specials = list(dict.fromkeys([*special.values(), *extra.values(), *extra_tokens]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(_CORPUS_WORDS[i:] + _CORPUS_WORDS[:i]) for i in range(len(_CORPUS_WORDS))]
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_VOCAB,
        special_tokens=specials,
        initial_alphabet=_PRINTABLE,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    if prepend_bos:
        bos = special["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra or None, **special)


def _save(folder: Path, model, processor) -> dict:
    """Write model + processor. Random weights pick eos or pad as often as any token and would mostly
    write nothing; zeroing the output rows of the special tokens makes them write text (a trained
    model learns when to stop; tests force eos explicitly to reach the empty-caption path)."""
    import torch

    tok = processor.tokenizer
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.all_special_ids] = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return {"model_id": str(folder)}


def _seeded(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)


# ----- BLIP-2 OPT ----------------------------------------------------------------------------------


def blip2_opt(folder: Path, full_size: bool = False) -> dict:
    """Blip2ForConditionalGeneration (ViT-g + Q-Former + OPT); full size = blip2-opt-2.7b's config."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    # OPT's tokenizer uses `</s>` as bos and eos, `<pad>` for padding (facebook/opt-2.7b tokenizer_config).
    # `<image>` as a plain added token, as on the hub: Blip2Processor registers it itself.
    tok = _tokenizer({"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>"}, extra_tokens=("<image>",),
                     prepend_bos=True)
    vocab = 50272 if full_size else len(tok)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if full_size:  # Salesforce/blip2-opt-2.7b config.json: EVA ViT-g/14 at 224, 32 queries, OPT-2.7b.
        size, vision = 224, Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39,
                                              num_attention_heads=16, image_size=224, patch_size=14)
        qformer = Blip2QFormerConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, encoder_hidden_size=1408)
        text = OPTConfig(vocab_size=vocab, hidden_size=2560, num_hidden_layers=32, ffn_dim=10240,
                         num_attention_heads=32, word_embed_proj_dim=2560, **ids)
        queries = 32
    else:
        size, vision = 32, Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8)
        qformer = Blip2QFormerConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, encoder_hidden_size=32, max_position_embeddings=64)
        text = OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                         word_embed_proj_dim=32, max_position_embeddings=128, **ids)
        queries = 4
    config = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                         text_config=text.to_dict(), num_query_tokens=queries,
                         image_token_index=tok.convert_tokens_to_ids("<image>"))
    _seeded()
    model = Blip2ForConditionalGeneration(config).eval()
    # BLIP-2 uses the OpenAI CLIP normalisation (blip2-opt-2.7b preprocessor_config.json).
    images = BlipImageProcessor(size={"height": size, "width": size}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                                image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)
    return _save(folder, model, Blip2Processor(images, tok, num_query_tokens=queries))


# ----- Qwen2-VL / Qwen2.5-VL -------------------------------------------------------------------------

# The ChatML layout of Qwen2-VL's chat template (vision tokens inline in the user turn), written for the tiny tokenizer.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_vl(folder: Path, full_size: bool, version: str, size_b: int) -> dict:
    import transformers as tf

    special = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
             "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
    tok = _tokenizer(special, named, extra_tokens=("<|im_start|>",))
    if version == "2":
        model_cls, config_cls, vision_cls, proc_cls = (tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLConfig,
                                                       tf.Qwen2VLVisionConfig, tf.Qwen2VLProcessor)
    else:
        model_cls, config_cls, vision_cls, proc_cls = (tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLConfig,
                                                       tf.Qwen2_5_VLVisionConfig, tf.Qwen2_5_VLProcessor)
    if full_size:  # Qwen/Qwen2-VL-7B-Instruct, Qwen2.5-VL-{3,7}B-Instruct config.json
        hidden, layers, heads, kv, inter = (3584, 28, 28, 4, 18944) if size_b == 7 else (2048, 36, 16, 2, 11008)
        text = dict(vocab_size=152064 if size_b == 7 else 151936, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                    rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6})
        if version == "2":
            vision = vision_cls(depth=32, embed_dim=1280, hidden_size=hidden, num_heads=16)
        else:
            vision = vision_cls(depth=32, hidden_size=1280, intermediate_size=3420, out_hidden_size=hidden,
                                num_heads=16, fullatt_block_indexes=[7, 15, 23, 31])
        pixels = dict(min_pixels=256 * 28 * 28, max_pixels=1024 * 28 * 28)
    else:
        # head_dim 16 -> 8 rotary frequencies split over (time, height, width) like the real [16, 24, 24].
        text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, intermediate_size=64, max_position_embeddings=512,
                    rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4})
        if version == "2":
            vision = vision_cls(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)
        else:
            vision = vision_cls(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=32, num_heads=2,
                                fullatt_block_indexes=[1], window_size=56)
        pixels = dict(min_pixels=4 * 28 * 28, max_pixels=12 * 28 * 28)
    text.update(bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = config_cls(text_config=text, vision_config=vision.to_dict(), image_token_id=tok.image_token_id,
                        video_token_id=tok.video_token_id,
                        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    _seeded()
    model = model_cls(config).eval()
    processor = proc_cls(image_processor=tf.Qwen2VLImageProcessor(**pixels),
                         video_processor=tf.Qwen2VLVideoProcessor(), tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    return _save(folder, model, processor)


def qwen2_vl(folder: Path, full_size: bool = False) -> dict:
    return _qwen_vl(folder, full_size, "2", 7)


def qwen2_5_vl_7b(folder: Path, full_size: bool = False) -> dict:
    return _qwen_vl(folder, full_size, "2.5", 7)


def qwen2_5_vl_3b(folder: Path, full_size: bool = False) -> dict:
    return _qwen_vl(folder, full_size, "2.5", 3)


# ----- Janus-Pro -------------------------------------------------------------------------------------

# Janus's conversation format ("<|User|>: ... <|Assistant|>:"), the layout of deepseek-community's chat template.
JANUS_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image_placeholder>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}\n\n{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


def _janus(folder: Path, full_size: bool, size_b: int) -> dict:
    import transformers as tf

    special = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>", "pad_token": "<｜▁pad▁｜>"}
    named = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
    tok = _tokenizer(special, named, extra_tokens=("<|User|>", "<|Assistant|>"))
    if full_size:  # deepseek-community/Janus-Pro-{1B,7B} config.json: SigLIP-L/16 at 384 -> 576 image tokens.
        hidden, layers, heads, inter = (2048, 24, 16, 5632) if size_b == 1 else (4096, 30, 32, 11008)
        text = tf.LlamaConfig(vocab_size=102400, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter)
        size, vision = 384, tf.JanusVisionConfig(projection_dim=hidden, num_image_tokens=576)
        vq = tf.JanusVQVAEConfig(projection_dim=hidden, image_token_embed_dim=hidden)
        tokens = 576
    else:
        text = tf.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256)
        size, tokens = 32, 16
        vision = tf.JanusVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                                      patch_size=8, projection_dim=32, num_image_tokens=tokens, depth=1)
        vq = tf.JanusVQVAEConfig(embed_dim=4, num_embeddings=16, latent_channels=32, base_channels=32,
                                 channel_multiplier=[1, 1], num_res_blocks=1, num_patches=2, projection_dim=32,
                                 image_token_embed_dim=32, num_hidden_layers=1)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(text, key, getattr(tok, key))
    config = tf.JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.to_dict(),
                            image_token_id=tok.image_token_id)
    _seeded()
    model = tf.JanusForConditionalGeneration(config).eval()
    # Janus-Pro's preprocessor_config.json: 384x384, mean/std 0.5 (SigLIP).
    images = tf.JanusImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = tf.JanusProcessor(images, tok, chat_template=JANUS_CHAT_TEMPLATE, num_image_tokens=tokens)
    return _save(folder, model, processor)


def janus_pro_1b(folder: Path, full_size: bool = False) -> dict:
    return _janus(folder, full_size, 1)


def janus_pro_7b(folder: Path, full_size: bool = False) -> dict:
    return _janus(folder, full_size, 7)


# ----- Florence-2 ------------------------------------------------------------------------------------


def _florence2(folder: Path, full_size: bool, large: bool) -> dict:
    import transformers as tf

    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    tok = _tokenizer(special, {"image_token": "<image>"})
    if full_size:  # florence-community/Florence-2-{base,large} config.json: DaViT + BART, 768x768 input.
        dims = (256, 512, 1024, 2048) if large else (128, 256, 512, 1024)
        heads = tuple(d // 32 for d in dims)
        d_model, layers = (1024, 12) if large else (768, 6)
        vision = tf.Florence2VisionConfig(embed_dim=list(dims), num_heads=list(heads), num_groups=list(heads),
                                          projection_dim=d_model)
        text = tf.BartConfig(vocab_size=51289, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                             encoder_attention_heads=d_model // 64, decoder_attention_heads=d_model // 64,
                             encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model)
        size = 768
    else:
        vision = tf.Florence2VisionConfig(depths=[1, 1, 1, 1], embed_dim=[8, 16, 32, 32], num_heads=[1, 2, 2, 2],
                                          num_groups=[1, 2, 2, 2], window_size=2, projection_dim=32,
                                          drop_path_rate=0.0)
        text = tf.BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                             decoder_ffn_dim=64, max_position_embeddings=256)
        size = 64
    # BART's ids: decoding starts from eos, then bos is forced, as in facebook/bart-large's config.
    text.bos_token_id, text.eos_token_id, text.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    text.decoder_start_token_id = text.forced_eos_token_id = tok.eos_token_id
    text.forced_bos_token_id = tok.bos_token_id
    config = tf.Florence2Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                image_token_id=tok.image_token_id)
    _seeded()
    model = tf.Florence2ForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.decoder_start_token_id, gen.forced_bos_token_id = text.decoder_start_token_id, text.forced_bos_token_id
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tok.eos_token_id, tok.pad_token_id, tok.bos_token_id
    # Image tokens: one per 32x32 cell of the DaViT output plus the pooled temporal token (577 at 768 px).
    images = tf.CLIPImageProcessor(size={"height": size, "width": size}, do_center_crop=False,
                                   image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    images.image_seq_length = (size // 32) ** 2 + 1
    processor = tf.Florence2Processor(images, tok)
    return _save(folder, model, processor)


def florence2_large(folder: Path, full_size: bool = False) -> dict:
    return _florence2(folder, full_size, True)


def florence2_base(folder: Path, full_size: bool = False) -> dict:
    return _florence2(folder, full_size, False)


# ----- baselines: how users caption today ---------------------------------------------------------


def pipeline_baseline(builder: Callable[..., dict], text: str = "", chat: bool = False) -> Callable[..., Callable]:
    """fn(folder, full_size) -> callable(image): transformers `pipeline("image-text-to-text")`, fp32,
    one image per call, `text` as the prompt (as one chat turn with the image when `chat`)."""

    def make(folder: Path, full_size: bool = False) -> Callable[[np.ndarray], object]:
        from PIL import Image
        from transformers import pipeline

        if not (folder / "config.json").exists():
            builder(folder, full_size)
        pipe = pipeline("image-text-to-text", model=str(folder), device="cpu", dtype="float32")

        def run(image: np.ndarray):
            pil = Image.fromarray(image)
            if chat:
                turn = [{"role": "user", "content": [{"type": "image", "image": pil}, {"type": "text", "text": text}]}]
                return pipe(text=turn, generate_kwargs={"max_new_tokens": 32})
            return pipe(images=pil, text=text, generate_kwargs={"max_new_tokens": 32})

        return run

    return make


def _alt_text(folder: Path, full_size: bool = False) -> dict:
    return {}  # no weights: the caption comes with the input


RANDOM: dict[str, Callable[..., dict]] = {
    "blip2_opt_2_7b": blip2_opt,
    "qwen2_vl_7b": qwen2_vl,
    "qwen2_5_vl_7b": qwen2_5_vl_7b,
    "qwen2_5_vl_3b": qwen2_5_vl_3b,
    "janus_pro_1b": janus_pro_1b,
    "janus_pro_7b": janus_pro_7b,
    "florence2_large": florence2_large,
    "florence2_base": florence2_base,
    "alt_text": _alt_text,
}
_DETAILED = "Describe this image in detail."
BASELINE: dict[str, Callable[..., Callable]] = {
    "blip2_opt_2_7b": pipeline_baseline(blip2_opt),
    "qwen2_vl_7b": pipeline_baseline(qwen2_vl, _DETAILED, chat=True),
    "qwen2_5_vl_7b": pipeline_baseline(qwen2_5_vl_7b, _DETAILED, chat=True),
    "qwen2_5_vl_3b": pipeline_baseline(qwen2_5_vl_3b, _DETAILED, chat=True),
    "janus_pro_1b": pipeline_baseline(janus_pro_1b, _DETAILED, chat=True),
    "janus_pro_7b": pipeline_baseline(janus_pro_7b, _DETAILED, chat=True),
    "florence2_large": pipeline_baseline(florence2_large, "<MORE_DETAILED_CAPTION>"),
    "florence2_base": pipeline_baseline(florence2_base, "<MORE_DETAILED_CAPTION>"),
    "alt_text": lambda folder, full_size=False: (lambda image: None),
}
