"""End-to-end fidelity of quantized variants: KL divergence of next-token distributions to the dense
model, and NLL, on held-out text (MMLU test questions, never used for calibration).

Layer-output error (bench.py) is what GPTQ/AWQ minimise; this checks that it carries to the model's
outputs.  python experiments/quantize_bench/end_to_end_kl.py [--catalogue configs/catalogue_default.yaml]
Writes kl_<catalogue name>.csv next to this file (kl_trust_study.csv: the trust study's catalogue).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogue", type=Path, default=HERE.parents[1] / "configs" / "catalogue_default.yaml")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--subject", default="high_school_biology")
    args = ap.parse_args()

    from codesign.config import load_config
    from codesign.models import load_model
    from codesign.paths import data_dir
    from codesign.quantize import Catalogue, load_variant, quantize_variant

    specs = load_config(Catalogue, args.catalogue).variants()
    dense = load_model(specs[0].model)
    text = (data_dir() / "mmlu" / "test" / f"{args.subject}_test.csv").read_text()
    ids = dense.tokenizer(text, return_tensors="pt").input_ids[:, : args.tokens]
    rows = []
    with torch.no_grad():
        ref = torch.log_softmax(dense.model(ids).logits.float(), -1)
        for s in specs:
            if not s.is_dense:
                quantize_variant(s, progress=False)
            lp = ref if s.is_dense else torch.log_softmax(load_variant(s).model(ids).logits.float(), -1)
            kl = float((ref.exp() * (ref - lp)).sum(-1).mean())
            nll = float(-lp[0, :-1].gather(-1, ids[0, 1:, None]).mean())
            rows.append({"variant": s.short_name, "method": s.method, "bits": s.bits, "kl_to_dense": kl, "nll": nll})
            print(f"{s.short_name:14s} KL {kl:.4f}  NLL {nll:.4f}")
    pd.DataFrame(rows).to_csv(HERE / f"kl_{args.catalogue.stem}.csv", index=False, float_format="%.5f")


if __name__ == "__main__":
    main()
