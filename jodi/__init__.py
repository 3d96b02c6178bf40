"""The Jodi model (joint image + label diffusion), its codecs, sampler and pipeline. Imports only `schemas` of ours.

Heavy pieces (diffusers, transformers) are imported by the modules that need them, so `import jodi` stays light.
"""

from jodi.model import PRESETS, Jodi, JodiConfig, build_model, load_weights

__all__ = ["PRESETS", "Jodi", "JodiConfig", "build_model", "load_weights"]
