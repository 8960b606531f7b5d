"""Register a tiny PyTorch or transformers model with @register as ``<name>@prod``; warm a cache.

``setup_flavor_models.py KIND TRACKING_URI CACHE_DIR``, run in the scenario's work directory:

- ``torch``: ``torchnet``, a ``torch.nn.Module`` of two Linear layers (4 -> 8 -> 2), its class
  defined here (MLflow's pytorch flavor pickles it whole, with cloudpickle);
- ``transformers``: ``textclf``, a text-classification pipeline over a one-layer BERT with
  random weights and a 15-token vocabulary, built with no hub access (``HF_HUB_OFFLINE=1``).

Then ``load_model("<name>@prod")`` through the default client (``MLFLOW_TRACKING_URI`` and
``REGISTRY_SDK_CACHE_DIR`` set here, as the timed processes set them) fills ``CACHE_DIR``, and
its prediction is checked against plain MLflow's. Prints the registered version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

import registry_sdk as rs

#: What the timed processes predict on (the scenarios build the same inputs).
TORCH_X = np.random.RandomState(1).rand(8, 4).astype(np.float32)
TEXTS = ["good movie", "bad plot", "great actor", "boring story"]
_WORDS = ["good", "bad", "movie", "film", "great", "awful", "plot", "actor", "story", "boring"]


class TorchNet(torch.nn.Module):
    """Two Linear layers, 4 -> 8 -> 2 (defined in ``__main__``: pickled by value)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def transformers_pipeline(scratch: Path) -> Any:
    """A text-classification pipeline: a BERT of one layer and its tokenizer, built offline."""
    import transformers

    tokenizer_dir = scratch / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]
    (tokenizer_dir / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    # From the folder: transformers 5 ignores BertTokenizerFast(vocab_file=...) (its argument
    # is vocab=), which would leave every word unknown; from_pretrained reads it in 4 and 5.
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(tokenizer_dir))
    unknown = tokenizer.convert_tokens_to_ids("[UNK]")
    assert all(tokenizer.convert_tokens_to_ids(w) != unknown for w in _WORDS), "vocab not read"
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)


def main(kind: str, uri: str, cache_dir: Path) -> None:
    """Register ``kind``'s model, load it once into ``cache_dir`` and check its prediction."""
    client = rs.RegistryClient(uri, cache_dir=cache_dir)
    if kind == "torch":
        name, data = "torchnet", TORCH_X

        @rs.register(name, alias="prod", client=client)
        def train() -> Any:
            torch.manual_seed(0)
            return TorchNet().eval()

    elif kind == "transformers":
        assert os.environ.get("HF_HUB_OFFLINE") == "1", "the transformers setup runs offline"
        name, data = "textclf", TEXTS

        @rs.register(name, alias="prod", client=client)
        def train() -> Any:
            return transformers_pipeline(Path.cwd())

    else:
        msg = f"unknown kind {kind!r}"
        raise SystemExit(msg)
    train()
    assert train.last_version is not None, "registered in the outbox, not on the server"

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["REGISTRY_SDK_CACHE_DIR"] = str(cache_dir)
    ours = rs.load_model(f"{name}@prod").predict(data)
    theirs = mlflow.pyfunc.load_model(f"models:/{name}@prod").predict(data)
    if kind == "torch":
        # The fast-load form the timed loads use: load_model keeps the module MLflow loaded.
        fast = list(cache_dir.glob(f"*/{name}/versions/*/fast/native.pkl"))
        assert fast, f"no fast-load form under {cache_dir}"
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6)
    else:
        # DataFrames of label and score, one row a text.
        assert ours.equals(theirs), (ours, theirs)
    print(train.last_version.version)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]).resolve())
