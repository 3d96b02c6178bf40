"""The two frozen encoders around Jodi, through their libraries: DC-AE (diffusers) and Gemma-2 (transformers).

Both load with `from_pretrained` from a hub id (pinned revision) or a local folder. `tiny()` builds a random
model of the same class with a tiny config, saves it to a folder and loads it back through the same
`from_pretrained` path, so tests exercise the real loading code offline.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor

from common.hub import ModelUnavailableError, load_pretrained

# DC-AE f32c32 used by Sana and Jodi (docs/jodi-reference.md#vae-and-text-encoder); the `-diffusers` repo is the
# AutoencoderDC layout of `mit-han-lab/dc-ae-f32c32-sana-1.0`. Revisions are "main": no commit pinned yet.
VAE_ID = "mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers"
VAE_REVISION = "main"
VAE_SCALE = 0.41407  # Sana/Jodi `scale_factor` for this autoencoder
TEXT_ID = "google/gemma-2-2b-it"  # gated on the Hub: accept the licence and `huggingface-cli login` first
TEXT_REVISION = "main"
MAX_TOKENS = 300

# Sana's "complex human instruction" (CHI) prefix, 8 lines, prepended to every caption before Gemma
# (Sana config `text_encoder.chi_prompt`; same text as diffusers' SanaPipeline default). Jodi keeps it.
CHI_PROMPT = "\n".join(
    [
        "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable"
        " for image generation. Evaluate the level of detail in the user prompt:",
        "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial"
        " relationships to create vivid and concrete scenes.",
        "- If the prompt is already detailed, refine and enhance the existing details slightly without"
        " overcomplicating.",
        "Here are examples of how to transform or refine prompts:",
        "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping"
        " peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
        "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing"
        " street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by"
        " towering glass skyscrapers.",
        "Please generate only the enhanced description for the prompt below and avoid including any additional"
        " commentary or evaluations:",
        "User Prompt: ",
    ]
)


# One error for "weights missing" across the repository (common/hub.py); the old name stays importable.
WeightsUnavailableError = ModelUnavailableError


def folder_hint(flag: str) -> str:
    """How a user of `jodi` passes local weights instead: the command-line flag that takes a folder."""
    return f"pass a local folder with `{flag} /path/to/folder`"


class LatentCodec:
    """Images in [-1, 1] <-> scaled DC-AE latents (B, 32, H/32, W/32)."""

    def __init__(self, vae, scale: float = VAE_SCALE):
        self.vae = vae.eval().requires_grad_(False)
        self.scale = scale

    @classmethod
    def from_pretrained(cls, path_or_id: str = VAE_ID, revision: str | None = VAE_REVISION,
                        dtype: torch.dtype = torch.float32, scale: float = VAE_SCALE) -> LatentCodec:
        from diffusers import AutoencoderDC

        vae = load_pretrained(AutoencoderDC.from_pretrained, "vae", path_or_id, revision, provide=folder_hint("--vae"),
                              torch_dtype=dtype)
        return cls(vae, scale)

    @classmethod
    def tiny(cls, folder: str | Path | None = None, seed: int = 0) -> LatentCodec:
        """A random AutoencoderDC with DC-AE's 32x downsampling and 32 latent channels but 8..64-wide stages."""
        from diffusers import AutoencoderDC

        folder = Path(folder or tempfile.mkdtemp(prefix="tiny_dcae_"))
        if not (folder / "config.json").exists():
            with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
                torch.manual_seed(seed)
                vae = AutoencoderDC(
                    latent_channels=32, attention_head_dim=8,
                    encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                    decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                    encoder_block_out_channels=(8, 8, 16, 16, 32, 64),
                    decoder_block_out_channels=(8, 8, 16, 16, 32, 64),
                    encoder_layers_per_block=(1,) * 6, decoder_layers_per_block=(1,) * 6,
                    encoder_qkv_multiscales=((),) * 3 + ((5,),) * 3, decoder_qkv_multiscales=((),) * 3 + ((5,),) * 3,
                )
            vae.save_pretrained(folder)
        return cls.from_pretrained(str(folder), revision=None)

    @property
    def factor(self) -> int:
        """Spatial downsampling factor (32 for f32c32)."""
        return 2 ** (len(self.vae.config.encoder_block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def to(self, device) -> LatentCodec:
        self.vae.to(device)
        return self

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1], H and W multiples of `factor` -> (B, 32, H/f, W/f) scaled latents."""
        x = images.to(self.device, next(self.vae.parameters()).dtype)
        return self.vae.encode(x).latent.float() * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents -> (B, 3, H, W) images, clamped to [-1, 1]."""
        z = (latents / self.scale).to(self.device, next(self.vae.parameters()).dtype)
        return self.vae.decode(z).sample.float().clamp(-1, 1)


class TextEncoder:
    """Captions -> Gemma-2 decoder hidden states (B, 300, 2304) and their mask, the way Sana/Jodi encode them."""

    def __init__(self, tokenizer, model, max_length: int = MAX_TOKENS, chi_prompt: str = CHI_PROMPT):
        self.tokenizer, self.model = tokenizer, model.eval().requires_grad_(False)
        self.tokenizer.padding_side = "right"
        self.max_length, self.chi_prompt = max_length, chi_prompt

    @classmethod
    def from_pretrained(cls, path_or_id: str = TEXT_ID, revision: str | None = TEXT_REVISION,
                        dtype: torch.dtype = torch.bfloat16, max_length: int = MAX_TOKENS) -> TextEncoder:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        provide = folder_hint("--text-encoder")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, "text encoder", path_or_id, revision, provide)
        lm = load_pretrained(AutoModelForCausalLM.from_pretrained, "text encoder", path_or_id, revision, provide,
                             dtype=dtype)
        return cls(tokenizer, lm.get_decoder(), max_length)  # Sana keeps only the decoder stack

    @classmethod
    def tiny(cls, folder: str | Path | None = None, max_length: int = 16, seed: int = 0) -> TextEncoder:
        """A random 2-layer Gemma2 (width 32) and a word-level tokenizer built offline with `tokenizers`."""
        from transformers import Gemma2Config, Gemma2ForCausalLM

        folder = Path(folder or tempfile.mkdtemp(prefix="tiny_gemma_"))
        if not (folder / "config.json").exists():
            tok = _tiny_tokenizer()
            tok.save_pretrained(folder)
            cfg = Gemma2Config(
                vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                sliding_window=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                lm = Gemma2ForCausalLM(cfg)
            lm.save_pretrained(folder)
        return cls.from_pretrained(str(folder), revision=None, dtype=torch.float32, max_length=max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def channels(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device) -> TextEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def _run(self, texts: list[str], total: int) -> tuple[Tensor, Tensor]:
        tokens = self.tokenizer(texts, max_length=total, padding="max_length", truncation=True, return_tensors="pt")
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        return self.model(input_ids=ids, attention_mask=mask)[0].float(), mask

    def encode(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """Captions -> (B, max_length, C) float embeddings and (B, max_length) mask.

        As Sana: prepend the CHI prompt, pad to len(chi) + max_length - 2 tokens, keep index 0 (BOS) and
        the last max_length - 1 positions, which hold the caption itself.
        """
        n_chi = len(self.tokenizer.encode(self.chi_prompt))
        emb, mask = self._run([self.chi_prompt + c for c in captions], n_chi + self.max_length - 2)
        keep = [0, *range(emb.shape[1] - self.max_length + 1, emb.shape[1])]
        return emb[:, keep], mask[:, keep]

    def null_embedding(self, batch: int = 1, negative_prompt: str = "") -> tuple[Tensor, Tensor]:
        """Encoding of "" (or of a negative prompt) without the CHI prefix, as Sana's null caption and
        diffusers' negative prompt are encoded -> (B, L, C), (B, L)."""
        emb, mask = self._run([negative_prompt], self.max_length)
        return emb.expand(batch, -1, -1), mask.expand(batch, -1)


def _tiny_tokenizer():
    """A word-level fast tokenizer over a small vocabulary that adds BOS like Gemma's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    words = sorted(set((CHI_PROMPT + " a photo of cat dog house tree person red blue green sky").lower().split()))
    vocab = {w: i for i, w in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")
